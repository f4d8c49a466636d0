//! libespeak-ng, opened at run time (so that a droid without it still
//! starts, with speech DEGRADED and the package to install named) and
//! driven in synchronous mode: the library hands over each buffer of
//! samples as it makes them, so a sentence streams out as it is made.
//!
//! The library keeps global state: it is used from the speech engine's one
//! thread only (`engine.rs`).

use std::{
    cell::Cell,
    ffi::{CStr, CString, c_char, c_int, c_uint, c_void},
    panic::{AssertUnwindSafe, catch_unwind},
};

use libloading::Library;

use super::synth::{Engine, Params, Piece, VoiceInfo};

/// The Debian package that brings the library.
pub const PACKAGE: &str = "espeak-ng";

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
/// Return errors rather than exit when the voice data is missing.
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
const POS_CHARACTER: c_int = 1;
const CHARS_UTF8: c_uint = 1;
const ENDPAUSE: c_uint = 0x1000;
const PARAM_RATE: c_int = 1;
const PARAM_PITCH: c_int = 3;
const EE_OK: c_int = 0;
/// Milliseconds of audio per callback.
const BUFFER_MS: c_int = 60;

#[repr(C)]
#[derive(Clone, Copy)]
union EventId {
    number: c_int,
    name: *const c_char,
    string: [c_char; 8],
}

/// `espeak_EVENT` of speak_lib.h.
#[repr(C)]
struct Event {
    kind: c_int,
    unique_identifier: c_uint,
    text_position: c_int,
    length: c_int,
    audio_position: c_int,
    sample: c_int,
    user_data: *mut c_void,
    id: EventId,
}

/// `espeak_VOICE` of speak_lib.h.
#[repr(C)]
struct Voice {
    name: *const c_char,
    languages: *const c_char,
    identifier: *const c_char,
    gender: u8,
    age: u8,
    variant: u8,
    xx1: u8,
    score: c_int,
    spare: *mut c_void,
}

type Callback = unsafe extern "C" fn(*mut i16, c_int, *mut Event) -> c_int;

/// The functions used, copied out of the library (which `_lib` keeps loaded).
struct Api {
    set_callback: unsafe extern "C" fn(Callback),
    set_parameter: unsafe extern "C" fn(c_int, c_int, c_int) -> c_int,
    set_voice: unsafe extern "C" fn(*const c_char) -> c_int,
    synth: unsafe extern "C" fn(
        *const c_void,
        usize,
        c_uint,
        c_int,
        c_uint,
        c_uint,
        *mut c_uint,
        *mut c_void,
    ) -> c_int,
    list_voices: unsafe extern "C" fn(*mut Voice) -> *const *const Voice,
    terminate: unsafe extern "C" fn() -> c_int,
}

/// What the callback calls: the synth call in progress on this thread.
type Sink<'a> = &'a mut dyn FnMut(&[i16]) -> bool;

thread_local! {
    /// A `*mut Sink` while a synth call runs on this thread, else null.
    static SINK: Cell<*mut c_void> = const { Cell::new(std::ptr::null_mut()) };
}

unsafe extern "C" fn callback(wav: *mut i16, samples: c_int, _events: *mut Event) -> c_int {
    let go_on = catch_unwind(AssertUnwindSafe(|| {
        let sink = SINK.with(Cell::get);
        if sink.is_null() || wav.is_null() || samples <= 0 {
            return true;
        }
        // SAFETY: the library hands `samples` samples at `wav`, valid for
        // this call; `sink` points at a live `Sink` for the duration of the
        // `synth` call that leads here, on this thread.
        unsafe {
            let pcm = std::slice::from_raw_parts(wav, samples as usize);
            let sink = &mut *sink.cast::<Sink<'_>>();
            sink(pcm)
        }
    }));
    // 0 goes on, 1 aborts the synthesis.
    c_int::from(!go_on.unwrap_or(false))
}

/// The loaded library.
pub struct Espeak {
    api: Api,
    rate: u32,
    version: String,
    _lib: Library,
}

impl Espeak {
    /// Opens and initialises libespeak-ng.
    ///
    /// # Errors
    ///
    /// What is missing and which package brings it.
    pub fn open() -> Result<Self, String> {
        let missing = |e: String| {
            format!(
                "the espeak-ng speech engine is not installed ({e}): install the Debian package `{PACKAGE}` (sudo apt install {PACKAGE}), or set speech_engine to `none`"
            )
        };
        // SAFETY: loading a system library whose initialisers are benign.
        let lib = unsafe { Library::new("libespeak-ng.so.1") }
            .or_else(|_| unsafe { Library::new("libespeak-ng.so") })
            .map_err(|e| missing(e.to_string()))?;
        // SAFETY: each symbol is declared with speak_lib.h's signature.
        let api = unsafe {
            let initialize = *lib
                .get::<unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int>(
                    b"espeak_Initialize\0",
                )
                .map_err(|e| missing(e.to_string()))?;
            let info = *lib
                .get::<unsafe extern "C" fn(*mut *const c_char) -> *const c_char>(b"espeak_Info\0")
                .map_err(|e| missing(e.to_string()))?;
            let api = Api {
                set_callback: *lib
                    .get(b"espeak_SetSynthCallback\0")
                    .map_err(|e| missing(e.to_string()))?,
                set_parameter: *lib
                    .get(b"espeak_SetParameter\0")
                    .map_err(|e| missing(e.to_string()))?,
                set_voice: *lib
                    .get(b"espeak_SetVoiceByName\0")
                    .map_err(|e| missing(e.to_string()))?,
                synth: *lib
                    .get(b"espeak_Synth\0")
                    .map_err(|e| missing(e.to_string()))?,
                list_voices: *lib
                    .get(b"espeak_ListVoices\0")
                    .map_err(|e| missing(e.to_string()))?,
                terminate: *lib
                    .get(b"espeak_Terminate\0")
                    .map_err(|e| missing(e.to_string()))?,
            };
            let rate = initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                BUFFER_MS,
                std::ptr::null(),
                INITIALIZE_DONT_EXIT,
            );
            if rate <= 0 {
                return Err(format!(
                    "the espeak-ng speech engine is installed but its voice data is not (espeak_Initialize failed): reinstall the Debian packages `{PACKAGE}` and `espeak-ng-data`"
                ));
            }
            (api.set_callback)(callback);
            let version = info(std::ptr::null_mut());
            let version = if version.is_null() {
                String::new()
            } else {
                CStr::from_ptr(version).to_string_lossy().into_owned()
            };
            (api, rate as u32, version)
        };
        let (api, rate, version) = api;
        Ok(Self {
            api,
            rate,
            version,
            _lib: lib,
        })
    }
}

impl Espeak {
    /// The library's voices, or those of `language` (`variant` gives the variants).
    fn list(&self, language: Option<&CString>) -> Vec<VoiceInfo> {
        let mut out = Vec::new();
        let mut spec = Voice {
            name: std::ptr::null(),
            languages: language.map_or(std::ptr::null(), |l| l.as_ptr()),
            identifier: std::ptr::null(),
            gender: 0,
            age: 0,
            variant: 0,
            xx1: 0,
            score: 0,
            spare: std::ptr::null_mut(),
        };
        let spec_ptr = if language.is_some() {
            &raw mut spec
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: the library returns a NULL-terminated array of voices that
        // stays valid until the next call; each is read at once. `spec`
        // outlives the call.
        unsafe {
            let mut list = (self.api.list_voices)(spec_ptr);
            while !list.is_null() && !(*list).is_null() {
                let v = &**list;
                let text = |p: *const c_char| {
                    if p.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(p).to_string_lossy().into_owned()
                    }
                };
                // `languages`: a priority byte, then a NUL-terminated name.
                let language = if v.languages.is_null() {
                    String::new()
                } else {
                    text(v.languages.add(1))
                };
                out.push(VoiceInfo {
                    name: if language.is_empty() || language == "variant" {
                        text(v.identifier)
                    } else {
                        language
                    },
                    description: text(v.name),
                    gender: match v.gender {
                        1 => "male",
                        2 => "female",
                        _ => "",
                    }
                    .into(),
                });
                list = list.add(1);
            }
        }
        out
    }
}

impl Engine for Espeak {
    fn name(&self) -> String {
        format!("espeak-ng {}", self.version)
    }

    fn id(&self) -> String {
        "espeak-ng".into()
    }

    fn rate(&self) -> u32 {
        self.rate
    }

    fn voices(&mut self) -> Vec<VoiceInfo> {
        let mut out = self.list(None);
        // The variants (`+robosoft` …), which go after any language.
        let variant = CString::new("variant").expect("no NUL");
        out.extend(self.list(Some(&variant)).into_iter().map(|mut v| {
            v.name = format!("+{}", v.name.rsplit('/').next().unwrap_or(&v.name));
            v
        }));
        out
    }

    fn check_voice(&mut self, voice: &str) -> Result<(), String> {
        // The library copies names into small fixed buffers: nothing long
        // or odd reaches it (the actor checks against the list before this).
        if voice.len() > super::synth::MAX_VOICE_NAME
            || !voice
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
        {
            return Err(format!("no voice '{voice}'"));
        }
        let name = CString::new(voice).map_err(|_| format!("no voice '{voice}'"))?;
        // SAFETY: a valid C string; the library copies what it needs.
        let result = unsafe { (self.api.set_voice)(name.as_ptr()) };
        if result == EE_OK {
            Ok(())
        } else {
            Err(format!(
                "espeak-ng has no voice '{voice}': 'speech voices' lists them (a language such as `en-us`, optionally with `+variant` such as `+robosoft`)"
            ))
        }
    }

    fn synth(
        &mut self,
        sentences: &[String],
        params: &Params,
        sink: &mut dyn FnMut(Piece<'_>) -> bool,
    ) -> Result<(), String> {
        self.check_voice(&params.voice)?;
        // SAFETY: plain integer parameters.
        unsafe {
            (self.api.set_parameter)(PARAM_RATE, params.rate as c_int, 0);
            (self.api.set_parameter)(PARAM_PITCH, params.pitch as c_int, 0);
        }
        for (i, sentence) in sentences.iter().enumerate() {
            let mut go_on = true;
            let mut audio = |pcm: &[i16]| {
                go_on = sink(Piece::Audio(pcm));
                go_on
            };
            let text = CString::new(sentence.replace('\0', " ")).expect("no NUL left");
            let bytes = text.as_bytes_with_nul();
            let mut sink_ref: Sink<'_> = &mut audio;
            // Used only by `callback`, during the synth call below on this
            // thread, and cleared right after.
            SINK.with(|s| s.set((&raw mut sink_ref).cast()));
            // SAFETY: a NUL-terminated UTF-8 buffer of `bytes.len()` bytes.
            let result = unsafe {
                (self.api.synth)(
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    0,
                    POS_CHARACTER,
                    0,
                    CHARS_UTF8 | ENDPAUSE,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            SINK.with(|s| s.set(std::ptr::null_mut()));
            if !go_on {
                return Ok(());
            }
            if result != EE_OK {
                return Err(format!(
                    "espeak-ng could not speak sentence {} (error {result})",
                    i + 1
                ));
            }
            if !sink(Piece::SentenceEnd(i)) {
                return Ok(());
            }
        }
        Ok(())
    }
}

impl Drop for Espeak {
    fn drop(&mut self) {
        // SAFETY: no synthesis runs (this thread owns the engine).
        unsafe {
            (self.api.terminate)();
        }
    }
}
