//! Streaming decode of music files into the mixer's layout.
//!
//! A [`Decoder`] probes a file (mp3, flac, ogg/vorbis, wav, m4a/aac) with
//! symphonia on the caller's thread, so a damaged or unsupported file fails at
//! once with its name, then decodes it on a thread of its own, one packet at a
//! time, into interleaved stereo `f32` at the output's rate ([`CHANNELS`]):
//! mono goes to both sides, stereo as is, more channels are folded down
//! (centre and surrounds at -3 dB, LFE dropped, normalised so nothing clips),
//! and a rubato resampler converts the rate when the file's differs from the
//! output's. The samples go into an `rtrb` ring that the real-time mixer
//! reads; when the ring is full the thread naps a few milliseconds. Nothing
//! holds more than a packet or a resampler chunk of the file, whatever its
//! length, and the steady-state loop reuses its buffers.
//!
//! The mixer's side of the contract is two things: the ring's consumer end and
//! the `finished` flag, set only after the last sample is in the ring. The
//! audio callback never touches the rest ([`DecoderShared::error`] is behind a
//! mutex for the owner only).
//!
//! [`decode_all`] runs the same pipeline without the thread and the ring, for
//! the benchmark and for offline checks.

use std::{
    f32::consts::FRAC_1_SQRT_2,
    fs::File,
    io,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use rtrb::{Consumer, Producer, RingBuffer};
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Indexing, Resampler, SincInterpolationParameters,
    WindowFunction, audioadapter_buffers::direct::InterleavedSlice,
};
use symphonia::core::{
    audio::{
        Audio, AudioBuffer, ChannelLabel, Channels, GenericAudioBufferRef, Position,
        conv::FromSample, sample::Sample,
    },
    codecs::audio::{AudioDecoder, AudioDecoderOptions},
    errors::Error as SymError,
    formats::{FormatOptions, FormatReader, TrackType, probe::Hint},
    io::MediaSourceStream,
    meta::MetadataOptions,
};
use tracing::{debug, warn};

use super::CHANNELS;

/// The formats the messages promise; keep in step with symphonia's features in Cargo.toml.
const FORMATS: &str = "mp3, flac, ogg/vorbis, wav, m4a/aac";

/// Packets in a row that may fail to decode before the file is declared
/// unreadable: a few bad packets are skipped (as players do), a file made of
/// nothing else is not music.
const MAX_BAD_PACKETS_IN_A_ROW: u32 = 200;

/// Resampler chunk, in input frames: small enough to keep latency and memory
/// low, big enough that the FFT's per-call cost is amortised.
const RESAMPLER_CHUNK: usize = 1024;

/// Why a file cannot be decoded. Every message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file could not be opened.
    #[error("cannot open {}: {source}. Check that the file exists and is readable", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why opening failed.
        #[source]
        source: io::Error,
    },
    /// Not a format or codec symphonia can decode.
    #[error(
        "{} is not an audio file symphonia can read ({FORMATS}): {why}. Convert it, e.g. `ffmpeg -i INPUT output.flac`",
        path.display()
    )]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What symphonia did not recognise.
        why: String,
    },
    /// The file is recognised but damaged (or has no audio in it).
    #[error("{} is damaged: {why}. Re-export or re-download it", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Reading failed after the file was opened (disk, network share, file cut short).
    #[error("cannot read {}: {source}. Check the disk or copy the file again", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The sample-rate converter could not be built or failed.
    #[error("cannot convert {} from {from} Hz to {to} Hz: {why}", path.display())]
    Resample {
        /// The file.
        path: PathBuf,
        /// The file's rate.
        from: u32,
        /// The output's rate.
        to: u32,
        /// Rubato's reason.
        why: String,
    },
    /// The caller asked for something impossible (a zero rate or ring).
    #[error("cannot play {}: {why}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was wrong with the request.
        why: String,
    },
    /// The operating system refused a thread.
    #[error("cannot start the decoder thread for {}: {source}", path.display())]
    Thread {
        /// The file.
        path: PathBuf,
        /// Why spawning failed.
        #[source]
        source: io::Error,
    },
    /// Symphonia panicked on this file (a bug in it, caught so the server lives on).
    #[error("the decoder crashed on {}: {why}. The file is probably damaged; re-export it", path.display())]
    Panicked {
        /// The file.
        path: PathBuf,
        /// The panic's message.
        why: String,
    },
}

/// What a file holds, as probed.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamInfo {
    /// The file's sample rate in Hz (before any resampling).
    pub sample_rate: u32,
    /// The file's channel count (before mapping to stereo).
    pub channels: usize,
    /// The length the file declares, if it declares one.
    pub duration: Option<Duration>,
    /// Symphonia's short codec name: "mp3", "flac", "vorbis", "aac", "pcm_s16le"…
    pub codec: String,
}

/// Shared between the decoder thread and its owner.
#[derive(Debug, Default)]
pub struct DecoderShared {
    /// Set once the last sample is in the ring (or the stream ended early):
    /// the mixer drops the voice when this is set and the ring is empty.
    finished: Arc<AtomicBool>,
    /// Asks the thread to stop; checked between packets and while waiting for room.
    stop: AtomicBool,
    /// Stereo frames pushed into the ring so far, for progress and tests.
    frames_out: AtomicU64,
    /// Packets that failed to decode and were skipped.
    skipped: AtomicU64,
    /// The error that ended the stream early; for the owner only, never the audio callback.
    error: Mutex<Option<String>>,
}

impl DecoderShared {
    /// Whether the stream is over (all its samples are in the ring).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// The error that ended the stream, if one did.
    pub fn error(&self) -> Option<String> {
        self.error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Stereo frames pushed into the ring so far.
    pub fn frames_out(&self) -> u64 {
        self.frames_out.load(Ordering::Acquire)
    }

    /// Packets skipped because they failed to decode.
    pub fn packets_skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    fn set_error(&self, message: String) {
        match self.error.lock() {
            Ok(mut e) => *e = Some(message),
            Err(p) => *p.into_inner() = Some(message),
        }
    }
}

/// One playing file: a thread decoding it into a ring. Stopping or dropping it
/// stops the thread and waits for it.
#[derive(Debug)]
pub struct Decoder {
    /// The decoder thread; `None` once joined.
    thread: Option<JoinHandle<()>>,
    /// State shared with the thread.
    shared: Arc<DecoderShared>,
    /// What the file holds.
    info: StreamInfo,
    /// The ring's capacity in frames, to bound what [`Decoder::wait_buffered`] can wait for.
    ring_frames: usize,
}

impl Decoder {
    /// Probes `path` synchronously (so a corrupt/unsupported file fails here,
    /// with its name) and decodes its first packet, then starts the decoder
    /// thread writing interleaved stereo at `out_rate` into a new ring of
    /// `ring_frames` stereo frames.
    ///
    /// Returns the decoder, the ring's consumer end and the `finished` flag for
    /// the mixer (set after the last sample was pushed), and what the file holds.
    ///
    /// # Errors
    ///
    /// The file cannot be opened, is not audio symphonia can decode, is
    /// damaged before its first packet decodes, or holds no audio; the rate
    /// or ring is zero; the thread cannot be started.
    pub fn start(
        path: &Path,
        out_rate: u32,
        ring_frames: usize,
    ) -> Result<(Decoder, Consumer<f32>, Arc<AtomicBool>, StreamInfo), DecodeError> {
        if ring_frames == 0 {
            return Err(DecodeError::Invalid {
                path: path.to_owned(),
                why: "the ring must hold at least one frame".into(),
            });
        }
        let mut pipeline = guard(path, || Pipeline::open(path, Some(out_rate)))?;
        let has_audio = guard(path, || pipeline.fill())?;
        if !has_audio {
            return Err(DecodeError::Corrupt {
                path: path.to_owned(),
                why: "it holds no audio frames".into(),
            });
        }
        let info = pipeline.info.clone();
        let (mut producer, consumer) = RingBuffer::new(ring_frames * CHANNELS);
        let shared = Arc::new(DecoderShared::default());
        // The first chunk is already decoded: into the ring with it now, so
        // that a caller waiting for the first period to start the voice
        // finds it there at once instead of waiting for the new thread.
        let n = producer.slots().min(pipeline.out.len()) / CHANNELS * CHANNELS;
        if n > 0 && producer.push_entire_slice(&pipeline.out[..n]).is_ok() {
            pipeline.out.drain(..n);
            shared
                .frames_out
                .fetch_add((n / CHANNELS) as u64, Ordering::Release);
        }
        let finished = shared.finished.clone();
        // Nap long enough for the mixer to free a useful share of the ring,
        // short enough to refill well before it runs dry (and to stop promptly).
        let ring_time = Duration::from_secs_f64(ring_frames as f64 / f64::from(out_rate));
        let nap = (ring_time / 4).clamp(Duration::from_millis(1), Duration::from_millis(5));
        let thread = thread::Builder::new()
            .name("cantina-decode".into())
            .spawn({
                let shared = shared.clone();
                move || run(pipeline, producer, &shared, nap)
            })
            .map_err(|source| DecodeError::Thread {
                path: path.to_owned(),
                source,
            })?;
        let decoder = Decoder {
            thread: Some(thread),
            shared,
            info: info.clone(),
            ring_frames,
        };
        Ok((decoder, consumer, finished, info))
    }

    /// What the file holds.
    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// The error met mid-file that ended the stream early, if any (the stream
    /// then ends; it is reported here, never by a panic).
    pub fn error(&self) -> Option<String> {
        self.shared.error()
    }

    /// Stereo frames (at the output's rate) pushed into the ring so far.
    pub fn frames_decoded(&self) -> u64 {
        self.shared.frames_out()
    }

    /// Packets that failed to decode and were skipped (a damaged patch in the file).
    pub fn packets_skipped(&self) -> u64 {
        self.shared.packets_skipped()
    }

    /// Whether the stream is over: every sample it will produce is in the ring.
    pub fn is_finished(&self) -> bool {
        self.shared.is_finished()
    }

    /// The state shared with the thread, for owners that outlive this handle's borrow.
    pub fn shared(&self) -> &Arc<DecoderShared> {
        &self.shared
    }

    /// Waits until `frames` stereo frames are in the ring (capped at the
    /// ring's size) or the stream has finished (a short file), so the caller
    /// can hand the voice to the mixer with its first period ready. Returns
    /// `false` if `timeout` passed first. Polls every 100 µs: this runs on a
    /// control thread, never the audio callback.
    pub fn wait_buffered(
        &self,
        consumer: &Consumer<f32>,
        frames: usize,
        timeout: Duration,
    ) -> bool {
        let wanted = frames.min(self.ring_frames) * CHANNELS;
        let deadline = Instant::now() + timeout;
        loop {
            if consumer.slots() >= wanted || self.shared.is_finished() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            // Short: the next chunk takes tens of microseconds, and a play
            // command waits on this.
            thread::sleep(Duration::from_micros(100));
        }
    }

    /// Asks the thread to stop and waits for it (a packet's decode at most).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // Cut a nap short rather than wait it out.
            thread.thread().unpark();
            if thread.join().is_err() {
                // `run` catches the pipeline's panics; this is only reachable
                // through a bug in this file.
                warn!("the decoder thread panicked");
            }
        }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Decodes a whole file to interleaved stereo `f32` as fast as possible,
/// calling `sink` with each chunk (a packet's worth, or a resampler chunk's).
/// `out_rate` `None` keeps the file's rate. Never holds the whole file. A
/// damaged packet is skipped; an unreadable file or a fatal error mid-way is
/// returned as the error.
///
/// # Errors
///
/// As [`Decoder::start`], and whatever ends the stream early (the file is
/// cut short, a read fails, too many packets in a row are damaged).
pub fn decode_all(
    path: &Path,
    out_rate: Option<u32>,
    mut sink: impl FnMut(&[f32]),
) -> Result<StreamInfo, DecodeError> {
    decode_while(path, out_rate, |samples| {
        sink(samples);
        true
    })
}

/// [`decode_all`], stopping early (without an error) when `sink` returns
/// false: for input that must not decode without bound (uploads).
///
/// # Errors
///
/// As [`decode_all`].
pub fn decode_while(
    path: &Path,
    out_rate: Option<u32>,
    mut sink: impl FnMut(&[f32]) -> bool,
) -> Result<StreamInfo, DecodeError> {
    let mut pipeline = guard(path, || Pipeline::open(path, out_rate))?;
    while guard(path, || pipeline.fill())? {
        if !sink(&pipeline.out) {
            return Ok(pipeline.info);
        }
    }
    if pipeline.skipped > 0 {
        warn!(
            file = %path.display(),
            skipped = pipeline.skipped,
            "skipped packets that failed to decode"
        );
    }
    Ok(pipeline.info)
}

/// Runs `f`, turning a panic inside symphonia or rubato into an error naming the file.
fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T, DecodeError>) -> Result<T, DecodeError> {
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(DecodeError::Panicked {
            path: path.to_owned(),
            why,
        })
    })
}

/// The decoder thread: push the primed chunk, then decode and push until the
/// end, a fatal error, a stop request or the consumer's departure.
fn run(mut pipeline: Pipeline, mut producer: Producer<f32>, shared: &DecoderShared, nap: Duration) {
    let path = pipeline.path.clone();
    'stream: loop {
        let mut chunk: &[f32] = &pipeline.out;
        while !chunk.is_empty() {
            if shared.stop.load(Ordering::Acquire) || producer.is_abandoned() {
                break 'stream;
            }
            // Whole frames only, so the mixer never sees half of one.
            let n = producer.slots().min(chunk.len()) / CHANNELS * CHANNELS;
            if n == 0 {
                thread::park_timeout(nap);
                continue;
            }
            if producer.push_entire_slice(&chunk[..n]).is_err() {
                // Cannot happen: `slots()` only grows until we push.
                continue;
            }
            shared
                .frames_out
                .fetch_add((n / CHANNELS) as u64, Ordering::Release);
            chunk = &chunk[n..];
        }
        let filled = guard(&path, || pipeline.fill());
        shared.skipped.store(pipeline.skipped, Ordering::Relaxed);
        match filled {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                warn!(error = %e, "decoding stopped early");
                shared.set_error(e.to_string());
                break;
            }
        }
    }
    if pipeline.skipped > 0 {
        warn!(
            file = %path.display(),
            skipped = pipeline.skipped,
            "skipped packets that failed to decode"
        );
    }
    // Last: every sample this stream will produce is in the ring by now.
    shared.finished.store(true, Ordering::Release);
}

/// File → packets → stereo at the output rate. `fill` leaves the next chunk in `out`.
struct Pipeline {
    /// The file, for messages.
    path: PathBuf,
    /// Symphonia's demuxer.
    format: Box<dyn FormatReader>,
    /// Symphonia's decoder for `track_id`.
    decoder: Box<dyn AudioDecoder>,
    /// The audio track being played; packets of other tracks are skipped.
    track_id: u32,
    /// What the file holds (updated by the first decoded packet).
    info: StreamInfo,
    /// The rate asked for; `None` keeps the first packet's rate.
    target_rate: Option<u32>,
    /// The rate of the packets decoded so far (0 before the first).
    source_rate: u32,
    /// How the current channel layout folds into stereo.
    mix: Downmix,
    /// The rate converter, when the file's rate is not the target's.
    resampler: Option<Resample>,
    /// The chunk `fill` produced: interleaved stereo at the target rate.
    out: Vec<f32>,
    /// Packets skipped because they failed to decode.
    skipped: u64,
    /// Skipped packets since the last good one.
    bad_in_a_row: u32,
    /// The end of the stream was reached (and the resampler flushed).
    ended: bool,
    /// The frame count the file declares (its first stream's), to notice a file cut short.
    declared_frames: Option<u64>,
    /// Frames decoded at the file's rate, to compare with `declared_frames`.
    source_frames: u64,
    /// An error found at the end, returned once the last chunk has been taken.
    late_error: Option<DecodeError>,
}

impl Pipeline {
    /// Opens and probes `path` and builds the decoder for its default audio track.
    fn open(path: &Path, out_rate: Option<u32>) -> Result<Self, DecodeError> {
        if out_rate == Some(0) {
            return Err(DecodeError::Invalid {
                path: path.to_owned(),
                why: "the output rate is 0 Hz".into(),
            });
        }
        let file = File::open(path).map_err(|source| DecodeError::Open {
            path: path.to_owned(),
            source,
        })?;
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let format = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| probe_error(path, e))?;
        let (track_id, decoder, info) = open_track(path, format.as_ref())?;
        let declared_frames = format
            .tracks()
            .iter()
            .find(|t| t.id == track_id)
            .and_then(|t| t.num_frames);
        Ok(Pipeline {
            path: path.to_owned(),
            format,
            decoder,
            track_id,
            info,
            target_rate: out_rate,
            source_rate: 0,
            mix: Downmix::default(),
            resampler: None,
            out: Vec::new(),
            skipped: 0,
            bad_in_a_row: 0,
            ended: false,
            declared_frames,
            source_frames: 0,
            late_error: None,
        })
    }

    /// Decodes until `out` holds a non-empty chunk (`true`) or the stream is
    /// over (`false`). Damaged packets are skipped and counted.
    fn fill(&mut self) -> Result<bool, DecodeError> {
        self.out.clear();
        while self.out.is_empty() {
            if self.ended {
                return match self.late_error.take() {
                    Some(e) => Err(e),
                    None => Ok(false),
                };
            }
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    self.ended = true;
                    if let Some(resample) = &mut self.resampler {
                        resample
                            .finish(&mut self.out)
                            .map_err(|why| self.resample_error(why))?;
                    }
                    self.late_error = self.check_length();
                    continue;
                }
                Err(SymError::ResetRequired) => {
                    // A chained stream (e.g. ogg files back to back): new
                    // tracks, maybe a new codec setup. Rate and layout
                    // changes are handled when the next packet decodes.
                    let (track_id, decoder, _) = open_track(&self.path, self.format.as_ref())?;
                    debug!(file = %self.path.display(), "stream reset: new track set");
                    self.track_id = track_id;
                    self.decoder = decoder;
                    // The declared length was the first stream's only.
                    self.declared_frames = None;
                    continue;
                }
                Err(SymError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(DecodeError::Corrupt {
                        path: self.path.clone(),
                        why: format!(
                            "it ends in the middle of its audio ({e}): the file is cut short"
                        ),
                    });
                }
                Err(SymError::IoError(source)) => {
                    return Err(DecodeError::Read {
                        path: self.path.clone(),
                        source,
                    });
                }
                Err(SymError::DecodeError(why)) => {
                    return Err(DecodeError::Corrupt {
                        path: self.path.clone(),
                        why: why.to_owned(),
                    });
                }
                Err(e) => {
                    return Err(DecodeError::Corrupt {
                        path: self.path.clone(),
                        why: e.to_string(),
                    });
                }
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let buf = match self.decoder.decode(&packet) {
                Ok(buf) => buf,
                Err(SymError::DecodeError(why)) => {
                    self.skip(why)?;
                    continue;
                }
                Err(SymError::IoError(e)) => {
                    // Symphonia reports a packet shorter than its header
                    // says as an I/O error; it is damage, not the disk.
                    self.skip(&e.to_string())?;
                    continue;
                }
                Err(SymError::ResetRequired) => {
                    self.decoder.reset();
                    continue;
                }
                Err(e) => {
                    return Err(DecodeError::Unsupported {
                        path: self.path.clone(),
                        why: e.to_string(),
                    });
                }
            };
            self.bad_in_a_row = 0;
            if buf.frames() == 0 {
                continue;
            }
            self.source_frames += buf.frames() as u64;
            let spec = buf.spec();
            let rate = spec.rate();
            if rate != self.source_rate {
                // First packet, or a chained stream at another rate: flush
                // what the old converter holds, then build one for this rate.
                if let Some(resample) = &mut self.resampler {
                    resample.finish(&mut self.out).map_err(|why| {
                        resample_error(&self.path, self.source_rate, resample.to, why)
                    })?;
                }
                let target = *self.target_rate.get_or_insert(rate);
                self.resampler = if rate == target {
                    None
                } else {
                    Some(
                        Resample::new(rate, target)
                            .map_err(|why| resample_error(&self.path, rate, target, why))?,
                    )
                };
                if self.source_rate == 0 {
                    self.info.sample_rate = rate;
                    self.info.channels = buf.num_planes();
                }
                self.source_rate = rate;
            }
            self.mix.adapt(spec.channels(), buf.num_planes());
            match &mut self.resampler {
                None => append_stereo(&buf, &self.mix, &mut self.out),
                Some(resample) => {
                    append_stereo(&buf, &self.mix, &mut resample.pending);
                    resample
                        .run(&mut self.out)
                        .map_err(|why| resample_error(&self.path, rate, resample.to, why))?;
                }
            }
        }
        Ok(true)
    }

    /// Counts a packet that failed to decode; too many in a row is fatal.
    fn skip(&mut self, why: &str) -> Result<(), DecodeError> {
        self.skipped += 1;
        self.bad_in_a_row += 1;
        if self.skipped == 1 {
            warn!(file = %self.path.display(), why, "skipping a packet that failed to decode");
        }
        if self.bad_in_a_row >= MAX_BAD_PACKETS_IN_A_ROW {
            return Err(DecodeError::Corrupt {
                path: self.path.clone(),
                why: format!(
                    "{} packets in a row failed to decode (last: {why})",
                    self.bad_in_a_row
                ),
            });
        }
        Ok(())
    }

    /// A file that ends well before the length it declares was cut short
    /// (or lost many packets): say so rather than stop in silence. The
    /// margin allows for estimated lengths (an mp3 without a Xing header).
    fn check_length(&self) -> Option<DecodeError> {
        let declared = self.declared_frames?;
        let rate = u64::from(self.source_rate.max(1));
        let short = declared.saturating_sub(self.source_frames);
        (short * 4 > declared && short * 4 >= rate).then(|| DecodeError::Corrupt {
            path: self.path.clone(),
            why: format!(
                "it ends after {:.1} s of the {:.1} s it declares: the file is cut short",
                self.source_frames as f64 / rate as f64,
                declared as f64 / rate as f64
            ),
        })
    }

    fn resample_error(&self, why: String) -> DecodeError {
        let to = self.resampler.as_ref().map_or(0, |r| r.to);
        resample_error(&self.path, self.source_rate, to, why)
    }
}

fn resample_error(path: &Path, from: u32, to: u32, why: String) -> DecodeError {
    DecodeError::Resample {
        path: path.to_owned(),
        from,
        to,
        why,
    }
}

/// Maps a probe failure to the error a person can act on.
fn probe_error(path: &Path, e: SymError) -> DecodeError {
    let path = path.to_owned();
    match e {
        SymError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            DecodeError::Unsupported {
                path,
                why: "no known audio format found before the end of the file".into(),
            }
        }
        SymError::IoError(source) => DecodeError::Read { path, source },
        SymError::Unsupported(why) => DecodeError::Unsupported {
            path,
            why: why.into(),
        },
        e => DecodeError::Corrupt {
            path,
            why: e.to_string(),
        },
    }
}

/// Picks the default audio track and builds its decoder.
fn open_track(
    path: &Path,
    format: &dyn FormatReader,
) -> Result<(u32, Box<dyn AudioDecoder>, StreamInfo), DecodeError> {
    let unsupported = |why: String| DecodeError::Unsupported {
        path: path.to_owned(),
        why,
    };
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| unsupported("it has no audio track with a known codec".into()))?;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| unsupported("its audio track has no codec parameters".into()))?;
    let decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| unsupported(e.to_string()))?;
    let sample_rate = params.sample_rate.unwrap_or(0);
    // Prefer the exact frame count; fall back to the time-base duration.
    let duration = match (track.num_frames, sample_rate) {
        (Some(frames), rate) if rate > 0 => {
            Some(Duration::from_secs_f64(frames as f64 / f64::from(rate)))
        }
        _ => track
            .time_base
            .zip(track.duration)
            .and_then(|(tb, d)| tb.calc_duration(d))
            .and_then(|t| u64::try_from(t.as_nanos()).ok())
            .map(Duration::from_nanos),
    };
    let info = StreamInfo {
        sample_rate,
        channels: params.channels.as_ref().map_or(0, Channels::count),
        duration,
        codec: decoder.codec_info().short_name.to_owned(),
    };
    Ok((track.id, decoder, info))
}

/// How a channel layout folds into stereo: a (left, right) gain per channel.
#[derive(Debug, Default)]
struct Downmix {
    /// The layout these gains are for.
    channels: Channels,
    /// The plane count these gains are for (a layout may not say).
    planes: usize,
    /// Per plane, its gain into the left and right outputs.
    gains: Vec<[f32; 2]>,
}

impl Downmix {
    /// Recomputes the gains when the layout changed (first packet, chained streams).
    fn adapt(&mut self, channels: &Channels, planes: usize) {
        if self.planes != planes || &self.channels != channels || self.gains.is_empty() {
            self.channels = channels.clone();
            self.planes = planes;
            self.gains = stereo_gains(channels, planes);
        }
    }
}

/// Per channel, its (left, right) gain when folding `planes` channels laid
/// out as `channels` into stereo. Mono goes to both sides at full level,
/// stereo passes as is. Larger layouts follow ITU-R BS.775: fronts to their
/// side, centres to both at -3 dB, surrounds to their side at -3 dB, LFE
/// dropped (as ffmpeg does by default), then everything is scaled so a
/// full-scale signal on every channel cannot clip.
fn stereo_gains(channels: &Channels, planes: usize) -> Vec<[f32; 2]> {
    match planes {
        0 => return Vec::new(),
        1 => return vec![[1.0, 1.0]],
        2 => return vec![[1.0, 0.0], [0.0, 1.0]],
        _ => {}
    }
    let positions: Vec<Option<Position>> = match channels {
        Channels::Positioned(mask) => single_positions(*mask),
        Channels::Custom(labels) => labels
            .iter()
            .map(|label| match label {
                ChannelLabel::Positioned(p) => Some(*p),
                _ => None,
            })
            .collect(),
        // No positions given: assume the WAVE order (FL, FR, FC, LFE, BL, BR…).
        _ => u32::try_from(planes)
            .ok()
            .and_then(Position::from_wave_channel_count)
            .map(single_positions)
            .unwrap_or_default(),
    };
    let mut gains: Vec<[f32; 2]> = (0..planes)
        .map(|i| match positions.get(i).copied().flatten() {
            Some(p) => position_gains(p),
            // Unknown: alternate sides so nothing is lost.
            None if i % 2 == 0 => [1.0, 0.0],
            None => [0.0, 1.0],
        })
        .collect();
    let loudest = [0, 1]
        .map(|side| gains.iter().map(|g| g[side]).sum::<f32>())
        .into_iter()
        .fold(0.0, f32::max);
    if loudest > 1.0 {
        for g in &mut gains {
            g[0] /= loudest;
            g[1] /= loudest;
        }
    }
    gains
}

/// The single-bit positions in `mask`, in symphonia's canonical (plane) order.
fn single_positions(mask: Position) -> Vec<Option<Position>> {
    let bits = mask.bits();
    (0..64)
        .filter(|b| bits & (1u64 << b) != 0)
        .map(|b| Position::from_bits(1u64 << b))
        .collect()
}

/// A single position's (left, right) gain.
fn position_gains(p: Position) -> [f32; 2] {
    const C: f32 = FRAC_1_SQRT_2;
    let left = Position::FRONT_LEFT
        | Position::FRONT_LEFT_CENTER
        | Position::FRONT_LEFT_WIDE
        | Position::TOP_FRONT_LEFT
        | Position::BOTTOM_FRONT_LEFT;
    let right = Position::FRONT_RIGHT
        | Position::FRONT_RIGHT_CENTER
        | Position::FRONT_RIGHT_WIDE
        | Position::TOP_FRONT_RIGHT
        | Position::BOTTOM_FRONT_RIGHT;
    let centre = Position::FRONT_CENTER
        | Position::REAR_CENTER
        | Position::TOP_CENTER
        | Position::TOP_FRONT_CENTER
        | Position::TOP_REAR_CENTER
        | Position::BOTTOM_FRONT_CENTER;
    let left_surround = Position::REAR_LEFT
        | Position::SIDE_LEFT
        | Position::TOP_REAR_LEFT
        | Position::TOP_SIDE_LEFT;
    let right_surround = Position::REAR_RIGHT
        | Position::SIDE_RIGHT
        | Position::TOP_REAR_RIGHT
        | Position::TOP_SIDE_RIGHT;
    if left.contains(p) {
        [1.0, 0.0]
    } else if right.contains(p) {
        [0.0, 1.0]
    } else if centre.contains(p) {
        [C, C]
    } else if left_surround.contains(p) {
        [C, 0.0]
    } else if right_surround.contains(p) {
        [0.0, C]
    } else {
        // LFE: dropped, as ffmpeg does unless asked.
        [0.0, 0.0]
    }
}

/// Appends `buf` to `out` as interleaved stereo `f32`, through `mix`.
fn append_stereo(buf: &GenericAudioBufferRef<'_>, mix: &Downmix, out: &mut Vec<f32>) {
    match buf {
        GenericAudioBufferRef::U8(b) => mix_planes(b, mix, out),
        GenericAudioBufferRef::U16(b) => mix_planes(b, mix, out),
        GenericAudioBufferRef::U24(b) => mix_planes(b, mix, out),
        GenericAudioBufferRef::U32(b) => mix_planes(b, mix, out),
        GenericAudioBufferRef::S8(b) => mix_planes(b, mix, out),
        GenericAudioBufferRef::S16(b) => mix_planes(b, mix, out),
        GenericAudioBufferRef::S24(b) => mix_planes(b, mix, out),
        GenericAudioBufferRef::S32(b) => mix_planes(b, mix, out),
        GenericAudioBufferRef::F32(b) => mix_planes(b, mix, out),
        GenericAudioBufferRef::F64(b) => mix_planes(b, mix, out),
    }
}

/// The conversion proper, monomorphised per sample type so the common cases
/// (mono, stereo) are straight copy loops.
fn mix_planes<S: Sample>(buf: &AudioBuffer<S>, mix: &Downmix, out: &mut Vec<f32>)
where
    f32: FromSample<S>,
{
    let frames = buf.frames();
    let start = out.len();
    // Within capacity after the first packets: no allocation in steady state.
    out.resize(start + frames * CHANNELS, 0.0);
    let dst = &mut out[start..];
    match (buf.num_planes(), buf.plane(0), buf.plane(1)) {
        (1, Some(mono), _) => {
            for (frame, &s) in dst.chunks_exact_mut(CHANNELS).zip(mono) {
                let v = f32::from_sample(s);
                frame[0] = v;
                frame[1] = v;
            }
        }
        (2, Some(left), Some(right)) => {
            for ((frame, &l), &r) in dst.chunks_exact_mut(CHANNELS).zip(left).zip(right) {
                frame[0] = f32::from_sample(l);
                frame[1] = f32::from_sample(r);
            }
        }
        _ => {
            // `dst` is zeroed by the resize above; accumulate each plane.
            for (i, [gl, gr]) in mix.gains.iter().copied().enumerate() {
                let Some(plane) = buf.plane(i) else { break };
                if gl == 0.0 && gr == 0.0 {
                    continue;
                }
                for (frame, &s) in dst.chunks_exact_mut(CHANNELS).zip(plane) {
                    let v = f32::from_sample(s);
                    frame[0] += gl * v;
                    frame[1] += gr * v;
                }
            }
        }
    }
}

/// A stereo rate converter fed packet by packet: keeps less than one chunk
/// of input between calls and trims its own delay, so the output lines up
/// with the input and has exactly `ceil(frames_in × ratio)` frames.
struct Resample {
    /// Rubato's converter: FFT (synchronous, exact) for ordinary rate pairs.
    inner: Box<dyn Resampler<f32>>,
    /// The input rate.
    from: u32,
    /// The output rate.
    to: u32,
    /// Interleaved input not yet converted (less than a chunk between calls).
    pending: Vec<f32>,
    /// One call's output; rubato writes here before the delay is trimmed.
    scratch: Vec<f32>,
    /// Output frames still to drop: the converter's startup delay.
    to_trim: usize,
    /// Frames in `pending` after the last call, to count what was appended since.
    queued: usize,
    /// Input frames given so far, to know how many output frames the end owes.
    frames_in: u64,
    /// Output frames produced so far (after trimming).
    frames_out: u64,
}

impl Resample {
    fn new(from: u32, to: u32) -> Result<Self, String> {
        let (from_u, to_u) = (from as usize, to as usize);
        // The FFT converter works in blocks of `rate / gcd` frames; for odd
        // pairs (44101 → 48000) that is a second of audio, so use the
        // asynchronous sinc converter, as good but slower, instead.
        let block = from_u / gcd(from_u, to_u);
        let inner: Box<dyn Resampler<f32>> = if block <= 2048 {
            Box::new(
                Fft::<f32>::new(from_u, to_u, RESAMPLER_CHUNK, CHANNELS, FixedSync::Input)
                    .map_err(|e| e.to_string())?,
            )
        } else {
            let params = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2);
            Box::new(
                Async::<f32>::new_sinc(
                    f64::from(to) / f64::from(from),
                    1.0,
                    &params,
                    RESAMPLER_CHUNK,
                    CHANNELS,
                    FixedAsync::Input,
                )
                .map_err(|e| e.to_string())?,
            )
        };
        let to_trim = inner.output_delay();
        let scratch = vec![0.0; inner.output_frames_max() * CHANNELS];
        let pending = Vec::with_capacity(inner.input_frames_max() * CHANNELS * 2);
        Ok(Resample {
            inner,
            from,
            to,
            pending,
            scratch,
            to_trim,
            queued: 0,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Converts every whole chunk in `pending`, appending to `out`.
    fn run(&mut self, out: &mut Vec<f32>) -> Result<(), String> {
        let pending_frames = self.pending.len() / CHANNELS;
        self.frames_in += (pending_frames - self.queued) as u64;
        let mut done = 0;
        loop {
            let need = self.inner.input_frames_next();
            if pending_frames - done < need {
                break;
            }
            let input = &self.pending[done * CHANNELS..(done + need) * CHANNELS];
            let n_out = process(self.inner.as_mut(), &mut self.scratch, input, None)?;
            done += need;
            self.emit(n_out, out, u64::MAX);
        }
        // A memmove of less than a chunk; no allocation.
        self.pending.drain(..done * CHANNELS);
        self.queued = self.pending.len() / CHANNELS;
        Ok(())
    }

    /// At the end of the input: converts what is left, pumps the delay out
    /// with silence, and appends exactly the frames still owed to `out`.
    /// Leaves the converter ready for a new stream.
    fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), String> {
        let mut left = self.pending.len() / CHANNELS;
        self.frames_in += (left - self.queued) as u64;
        // Exact for the FFT converter, whose ratio is exactly `to / from`.
        let owed =
            (u128::from(self.frames_in) * u128::from(self.to)).div_ceil(u128::from(self.from));
        let owed = u64::try_from(owed).unwrap_or(u64::MAX);
        // Each call yields about a chunk; the delay is a few chunks at most.
        let mut calls_left = 64 + owed.saturating_sub(self.frames_out) / 16;
        while self.frames_out < owed {
            if calls_left == 0 {
                return Err("the resampler stopped producing output".into());
            }
            calls_left -= 1;
            let need = self.inner.input_frames_next();
            // Rubato reads `partial_len` frames and treats the rest as
            // silence; zero them anyway so a stale tail is never heard.
            let partial = left.min(need);
            self.pending.resize(need * CHANNELS, 0.0);
            self.pending[partial * CHANNELS..].fill(0.0);
            let n_out = process(
                self.inner.as_mut(),
                &mut self.scratch,
                &self.pending,
                Some(partial),
            )?;
            self.pending.drain(..partial * CHANNELS);
            left -= partial;
            self.emit(n_out, out, owed);
        }
        self.inner.reset();
        self.pending.clear();
        self.queued = 0;
        self.to_trim = self.inner.output_delay();
        self.frames_in = 0;
        self.frames_out = 0;
        Ok(())
    }

    /// Appends the `n_out` frames in `scratch` to `out`, minus the startup
    /// delay still to trim and anything past `limit` frames in total.
    fn emit(&mut self, n_out: usize, out: &mut Vec<f32>, limit: u64) {
        let skip = self.to_trim.min(n_out);
        self.to_trim -= skip;
        let room = limit.saturating_sub(self.frames_out);
        let keep = ((n_out - skip) as u64).min(room) as usize;
        out.extend_from_slice(&self.scratch[skip * CHANNELS..(skip + keep) * CHANNELS]);
        self.frames_out += keep as u64;
    }
}

/// Interleaved stereo converted from one rate to another piece by piece, for
/// audio that arrives in parts (speech, as it is synthesized). Keeps what is
/// left of each part for the next; the output lines up with the input and
/// ends with exactly the frames the input's length calls for.
pub struct StreamResampler {
    /// `None` when the rates are equal: samples pass through.
    inner: Option<Resample>,
}

impl StreamResampler {
    /// A converter from `from` to `to` frames a second.
    ///
    /// # Errors
    ///
    /// Rubato's, for a rate it cannot convert (0, or absurdly far apart).
    pub fn new(from: u32, to: u32) -> Result<Self, String> {
        if from == 0 || to == 0 {
            return Err(format!("cannot convert {from} Hz to {to} Hz"));
        }
        let inner = (from != to).then(|| Resample::new(from, to)).transpose()?;
        Ok(Self { inner })
    }

    /// Converts `stereo` (interleaved), appending what is ready to `out`.
    ///
    /// # Errors
    ///
    /// Rubato's.
    pub fn push(&mut self, stereo: &[f32], out: &mut Vec<f32>) -> Result<(), String> {
        match &mut self.inner {
            None => {
                out.extend_from_slice(stereo);
                Ok(())
            }
            Some(resample) => {
                resample.pending.extend_from_slice(stereo);
                resample.run(out)
            }
        }
    }

    /// At the end of the input: appends the rest to `out`.
    ///
    /// # Errors
    ///
    /// Rubato's.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), String> {
        match &mut self.inner {
            None => Ok(()),
            Some(resample) => resample.finish(out),
        }
    }
}

/// One rubato call from `input` (at least a chunk, or `partial` valid frames) into `scratch`.
fn process(
    inner: &mut dyn Resampler<f32>,
    scratch: &mut [f32],
    input: &[f32],
    partial: Option<usize>,
) -> Result<usize, String> {
    let input = InterleavedSlice::new(input, CHANNELS, input.len() / CHANNELS)
        .map_err(|e| e.to_string())?;
    let capacity = scratch.len() / CHANNELS;
    let mut output =
        InterleavedSlice::new_mut(scratch, CHANNELS, capacity).map_err(|e| e.to_string())?;
    let indexing = partial.map(|n| Indexing::new().partial_len(n));
    let (_, n_out) = inner
        .process_into_buffer(&input, &mut output, indexing.as_ref())
        .map_err(|e| e.to_string())?;
    Ok(n_out)
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

#[cfg(test)]
mod tests {
    //! Real files made by ffmpeg in a temporary folder, decoded through the
    //! real thread and ring, checked for length, pitch and channel layout.

    use std::process::Command;

    use symphonia::core::audio::layouts;

    use super::*;

    const OUT_RATE: u32 = 48_000;

    /// Runs ffmpeg, failing loudly (never skipping) when it is missing.
    fn ffmpeg(args: &[&str]) {
        let output = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-y"])
            .args(args)
            .output();
        match output {
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "ffmpeg is not installed, and these tests make their audio files with it: \
                 run `./dev.sh test`, which installs it"
            ),
            Err(e) => panic!("cannot run ffmpeg: {e}"),
            Ok(out) if !out.status.success() => panic!(
                "ffmpeg {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Ok(_) => {}
        }
    }

    /// The encoder settings for a file extension.
    fn codec_args(ext: &str) -> &'static [&'static str] {
        match ext {
            "mp3" => &["-c:a", "libmp3lame", "-b:a", "192k"],
            "flac" => &["-c:a", "flac"],
            "ogg" => &["-c:a", "libvorbis", "-q:a", "5"],
            "wav" => &["-c:a", "pcm_s16le"],
            "m4a" => &["-c:a", "aac", "-b:a", "192k"],
            _ => panic!("no codec for .{ext}"),
        }
    }

    /// Writes a tone file: 440 Hz on the left (or the only) channel, 660 Hz
    /// on the right, so a swapped or duplicated channel shows.
    fn tone(dir: &Path, ext: &str, rate: u32, stereo: bool, secs: f64) -> PathBuf {
        let layout = if stereo { "stereo" } else { "mono" };
        let path = dir.join(format!("tone-{rate}-{layout}-{secs}s.{ext}"));
        let left = format!("sine=frequency=440:sample_rate={rate}:duration={secs}");
        let right = format!("sine=frequency=660:sample_rate={rate}:duration={secs}");
        let mut args = vec!["-f", "lavfi", "-i", &left];
        if stereo {
            args.extend([
                "-f",
                "lavfi",
                "-i",
                &right,
                "-filter_complex",
                "[0:a][1:a]amerge=inputs=2[a]",
                "-map",
                "[a]",
            ]);
        } else {
            args.extend(["-ac", "1"]);
        }
        args.extend(codec_args(ext));
        let out = path.to_str().expect("temporary paths are UTF-8");
        args.push(out);
        ffmpeg(&args);
        path
    }

    /// Everything a stream produced, read the way the mixer reads it.
    struct Played {
        info: StreamInfo,
        samples: Vec<f32>,
        error: Option<String>,
        skipped: u64,
    }

    impl Played {
        fn frames(&self) -> usize {
            self.samples.len() / CHANNELS
        }

        fn channel(&self, c: usize) -> Vec<f32> {
            self.samples
                .iter()
                .skip(c)
                .step_by(CHANNELS)
                .copied()
                .collect()
        }
    }

    /// Plays `path` through `Decoder::start` with a small ring, draining it
    /// until `finished`, and checks that the flag came after the last sample.
    fn play(path: &Path) -> Played {
        let (decoder, mut consumer, finished, info) =
            Decoder::start(path, OUT_RATE, 4096).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&info, decoder.info());
        let mut samples = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Read the flag first: once it is set, the ring holds the rest.
            let done = finished.load(Ordering::Acquire);
            let n = consumer.slots();
            if n > 0 {
                let chunk = consumer.read_chunk(n).expect("slots are there");
                samples.extend(chunk);
            }
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never finished",
                path.display()
            );
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(consumer.slots(), 0, "samples arrived after `finished`");
        assert_eq!(samples.len() % CHANNELS, 0);
        assert_eq!(
            samples.len() as u64,
            decoder.frames_decoded() * CHANNELS as u64
        );
        let played = Played {
            info,
            error: decoder.error(),
            skipped: decoder.packets_skipped(),
            samples,
        };
        decoder.stop();
        played
    }

    /// The frequency of a pure tone, from its rising zero crossings
    /// (interpolated), over the middle of the signal.
    fn pitch(x: &[f32], rate: u32) -> f64 {
        let x = &x[x.len() / 8..x.len() * 7 / 8];
        let crossings: Vec<f64> = x
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
            .map(|(i, w)| i as f64 + f64::from(-w[0] / (w[1] - w[0])))
            .collect();
        assert!(crossings.len() > 10, "no tone found");
        let span = crossings[crossings.len() - 1] - crossings[0];
        (crossings.len() - 1) as f64 / span * f64::from(rate)
    }

    /// The amplitude of `freq` in `x` (a single DFT bin), over one second
    /// from the middle so the edges do not count.
    fn amplitude(x: &[f32], rate: u32, freq: f64) -> f64 {
        let n = rate as usize;
        let start = (x.len() - n) / 2;
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x[start..start + n].iter().enumerate() {
            let phase = 2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate);
            re += f64::from(s) * phase.cos();
            im += f64::from(s) * phase.sin();
        }
        2.0 * (re * re + im * im).sqrt() / n as f64
    }

    #[test]
    fn every_format_decodes_to_stereo_at_the_output_rate() {
        let dir = tempfile::tempdir().unwrap();
        let secs = 2.0;
        let expected = (secs * f64::from(OUT_RATE)) as i64;
        for ext in ["mp3", "flac", "ogg", "wav", "m4a"] {
            for (rate, stereo) in [
                (44_100, true),
                (48_000, false),
                (44_100, false),
                (48_000, true),
            ] {
                let path = tone(dir.path(), ext, rate, stereo, secs);
                let case = format!("{ext} {rate} Hz {}", if stereo { "stereo" } else { "mono" });
                let played = play(&path);
                assert_eq!(played.error, None, "{case}");
                assert_eq!(played.skipped, 0, "{case}");
                assert_eq!(played.info.sample_rate, rate, "{case}");
                assert_eq!(played.info.channels, if stereo { 2 } else { 1 }, "{case}");
                let declared = played
                    .info
                    .duration
                    .expect("every test file declares a length");
                assert!(
                    (declared.as_secs_f64() - secs).abs() < 0.05,
                    "{case}: declares {declared:?}"
                );
                // Gapless for all but AAC, whose priming and padding symphonia keeps
                // (it does not read the MP4 edit list): up to two AAC frames more.
                let extra = played.frames() as i64 - expected;
                let allowed = if ext == "m4a" { 0..=2400 } else { -48..=48 };
                assert!(allowed.contains(&extra), "{case}: {extra} frames off");
                let (left, right) = (played.channel(0), played.channel(1));
                let left_pitch = pitch(&left, OUT_RATE);
                assert!(
                    (left_pitch - 440.0).abs() < 0.5,
                    "{case}: left at {left_pitch} Hz"
                );
                if stereo {
                    let right_pitch = pitch(&right, OUT_RATE);
                    assert!(
                        (right_pitch - 660.0).abs() < 0.5,
                        "{case}: right at {right_pitch} Hz"
                    );
                } else {
                    assert_eq!(left, right, "{case}: mono must be on both sides");
                }
            }
        }
    }

    #[test]
    fn decode_all_keeps_the_source_rate_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = tone(dir.path(), "flac", 44_100, true, 1.0);
        let mut samples = Vec::new();
        let info = decode_all(&path, None, |chunk| samples.extend_from_slice(chunk)).unwrap();
        assert_eq!(info.sample_rate, 44_100);
        assert_eq!(samples.len(), 44_100 * CHANNELS);
        let left: Vec<f32> = samples.iter().step_by(2).copied().collect();
        assert!((pitch(&left, 44_100) - 440.0).abs() < 0.5);

        let mut frames = 0;
        decode_all(&path, Some(OUT_RATE), |chunk| {
            frames += chunk.len() / CHANNELS
        })
        .unwrap();
        assert_eq!(frames, OUT_RATE as usize);
        let mut frames = 0;
        decode_all(&path, Some(22_050), |chunk| {
            frames += chunk.len() / CHANNELS
        })
        .unwrap();
        assert_eq!(frames, 22_050);
    }

    #[test]
    fn surround_is_folded_down_to_stereo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("surround.flac");
        // 5.1 in WAVE order: FL, FR, FC, LFE, BL, BR, each its own tone.
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "aevalsrc=exprs=0.2*sin(2*PI*440*t)|0.2*sin(2*PI*660*t)|0.2*sin(2*PI*550*t)|\
             0.2*sin(2*PI*100*t)|0.2*sin(2*PI*330*t)|0.2*sin(2*PI*770*t):s=48000:d=2:c=5.1",
            "-c:a",
            "flac",
            path.to_str().unwrap(),
        ]);
        let played = play(&path);
        assert_eq!(played.info.channels, 6);
        assert_eq!(played.error, None);
        let (left, right) = (played.channel(0), played.channel(1));
        // 1 + 2 × -3 dB per side, scaled back so nothing clips.
        let scale = 0.2 / (1.0 + std::f64::consts::SQRT_2);
        let c = std::f64::consts::FRAC_1_SQRT_2;
        for (signal, side, expect) in [
            (
                &left,
                "left",
                [
                    (440.0, 1.0),
                    (550.0, c),
                    (330.0, c),
                    (660.0, 0.0),
                    (770.0, 0.0),
                ],
            ),
            (
                &right,
                "right",
                [
                    (660.0, 1.0),
                    (550.0, c),
                    (770.0, c),
                    (440.0, 0.0),
                    (330.0, 0.0),
                ],
            ),
        ] {
            for (freq, gain) in expect {
                let got = amplitude(signal, OUT_RATE, freq);
                assert!(
                    (got - gain * scale).abs() < 0.005,
                    "{side} {freq} Hz: {got}, expected {}",
                    gain * scale
                );
            }
            assert!(
                amplitude(signal, OUT_RATE, 100.0) < 0.002,
                "LFE reached the {side} side"
            );
        }
    }

    #[test]
    fn stereo_gains_follow_the_layout() {
        assert_eq!(
            stereo_gains(&layouts::CHANNEL_LAYOUT_MONO, 1),
            vec![[1.0, 1.0]]
        );
        assert_eq!(
            stereo_gains(&layouts::CHANNEL_LAYOUT_STEREO, 2),
            vec![[1.0, 0.0], [0.0, 1.0]]
        );
        let g = stereo_gains(&layouts::CHANNEL_LAYOUT_5P1, 6);
        // Canonical order: FL, FR, FC, LFE, BL, BR.
        assert_eq!(g.len(), 6);
        assert!(g[0][0] > 0.0 && g[0][1] == 0.0);
        assert!(g[1][0] == 0.0 && g[1][1] > 0.0);
        assert!(g[2][0] > 0.0 && (g[2][0] - g[2][1]).abs() < 1e-6);
        assert_eq!(g[3], [0.0, 0.0]);
        for side in 0..2 {
            let sum: f32 = g.iter().map(|g| g[side]).sum();
            assert!(
                (sum - 1.0).abs() < 1e-5,
                "a full-scale signal everywhere must not clip"
            );
        }
        // No positions: WAVE order is assumed.
        assert_eq!(stereo_gains(&Channels::Discrete(6), 6), g);
        // Positions nobody knows: alternate sides rather than drop them.
        let odd = stereo_gains(
            &Channels::Custom(vec![ChannelLabel::Discrete(0); 3].into()),
            3,
        );
        assert_eq!(odd.len(), 3);
        assert!(odd[0][0] > 0.0 && odd[1][1] > 0.0 && odd[2][0] > 0.0);
    }

    #[test]
    fn chained_ogg_streams_play_back_to_back() {
        let dir = tempfile::tempdir().unwrap();
        // Two streams at different rates and layouts: symphonia asks for a
        // reset between them, and the converter must follow the rate change.
        let first = tone(dir.path(), "ogg", 44_100, true, 1.0);
        let second = tone(dir.path(), "ogg", 48_000, false, 1.0);
        let chained = dir.path().join("chained.ogg");
        let mut bytes = std::fs::read(&first).unwrap();
        bytes.extend(std::fs::read(&second).unwrap());
        std::fs::write(&chained, bytes).unwrap();
        let played = play(&chained);
        assert_eq!(played.error, None);
        assert!(
            (played.frames() as i64 - 2 * OUT_RATE as i64).abs() <= 48,
            "{}",
            played.frames()
        );
        let right = played.channel(1);
        let (a, b) = right.split_at(OUT_RATE as usize);
        assert!((pitch(a, OUT_RATE) - 660.0).abs() < 0.5);
        assert!(
            (pitch(b, OUT_RATE) - 440.0).abs() < 0.5,
            "mono second stream on the right too"
        );
    }

    #[test]
    fn a_file_that_is_not_audio_fails_at_start_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let noise = dir.path().join("noise.mp3");
        std::fs::write(&noise, pseudo_random(64 * 1024, 7)).unwrap();
        let empty = dir.path().join("empty.ogg");
        std::fs::write(&empty, b"").unwrap();
        let flac = tone(dir.path(), "flac", 44_100, true, 1.0);
        let header_only = dir.path().join("header-only.flac");
        std::fs::write(&header_only, &std::fs::read(&flac).unwrap()[..100]).unwrap();
        for path in [&noise, &empty, &header_only] {
            let err = Decoder::start(path, OUT_RATE, 1024)
                .map(|_| ())
                .unwrap_err();
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(
                matches!(
                    err,
                    DecodeError::Unsupported { .. } | DecodeError::Corrupt { .. }
                ),
                "{message}"
            );
            assert!(decode_all(path, None, |_| ()).is_err());
        }
        let err = Decoder::start(&noise, OUT_RATE, 1024)
            .map(|_| ())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("is not an audio file symphonia can read (mp3, flac"),
            "{err}"
        );
        let missing = dir.path().join("missing.mp3");
        let err = Decoder::start(&missing, OUT_RATE, 1024)
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, DecodeError::Open { .. }), "{err}");
        assert!(err.to_string().contains("missing.mp3"), "{err}");
        let err = Decoder::start(&flac, 0, 1024).map(|_| ()).unwrap_err();
        assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
        let err = Decoder::start(&flac, OUT_RATE, 0).map(|_| ()).unwrap_err();
        assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
    }

    #[test]
    fn a_file_cut_short_ends_the_stream_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["flac", "mp3", "wav"] {
            let whole = tone(dir.path(), ext, 44_100, true, 4.0);
            let bytes = std::fs::read(&whole).unwrap();
            let cut = dir.path().join(format!("cut.{ext}"));
            std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
            let played = play(&cut);
            let error = played
                .error
                .as_deref()
                .unwrap_or_else(|| panic!("{ext}: no error"));
            assert!(error.contains(&cut.display().to_string()), "{error}");
            assert!(error.contains("cut short"), "{error}");
            // What came before the cut was played.
            let secs = played.frames() as f64 / f64::from(OUT_RATE);
            assert!((1.0..2.5).contains(&secs), "{ext}: played {secs} s");
            assert!(decode_all(&cut, None, |_| ()).is_err());
        }
    }

    #[test]
    fn damaged_packets_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = tone(dir.path(), "mp3", 44_100, true, 4.0);
        let mut bytes = std::fs::read(&path).unwrap();
        // Scramble the side information of five frames mid-file, keeping
        // their headers, so the demuxer still hands them over and the
        // decoder is the one that fails on them.
        let frames = mp3_frames(&bytes);
        let middle = frames.len() / 2;
        for (i, &start) in frames[middle..middle + 5].iter().enumerate() {
            bytes[start + 4..start + 36].copy_from_slice(&pseudo_random(32, i as u64 + 1));
        }
        std::fs::write(&path, bytes).unwrap();
        let played = play(&path);
        assert_eq!(
            played.error, None,
            "a damaged patch is not the end of the song"
        );
        assert!(played.skipped > 0, "the damaged packets must be counted");
        let secs = played.frames() as f64 / f64::from(OUT_RATE);
        assert!(secs > 3.5, "played only {secs} s");
    }

    /// The offsets of the MPEG-1 layer III frames in `bytes` (following the
    /// chain of frame lengths from the first header).
    fn mp3_frames(bytes: &[u8]) -> Vec<usize> {
        const KBPS: [usize; 15] = [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ];
        const RATES: [usize; 3] = [44_100, 48_000, 32_000];
        let mut at = bytes
            .windows(2)
            .position(|w| w[0] == 0xFF && w[1] & 0xFE == 0xFA)
            .expect("an mp3 frame header");
        let mut frames = Vec::new();
        while at + 4 <= bytes.len() && bytes[at] == 0xFF && bytes[at + 1] & 0xFE == 0xFA {
            let kbps = KBPS[usize::from(bytes[at + 2] >> 4).min(14)];
            let rate = RATES[usize::from((bytes[at + 2] >> 2) & 3).min(2)];
            let padding = usize::from((bytes[at + 2] >> 1) & 1);
            frames.push(at);
            at += 144 * kbps * 1000 / rate + padding;
        }
        assert!(frames.len() > 50, "only {} frames found", frames.len());
        frames
    }

    #[test]
    fn stop_returns_promptly_while_the_ring_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = tone(dir.path(), "flac", 44_100, true, 10.0);
        let (decoder, consumer, finished, _) = Decoder::start(&path, OUT_RATE, 1024).unwrap();
        assert!(decoder.wait_buffered(&consumer, 1024, Duration::from_secs(10)));
        assert_eq!(consumer.slots(), 1024 * CHANNELS, "the ring is full");
        thread::sleep(Duration::from_millis(20));
        assert!(!finished.load(Ordering::Acquire));
        assert_eq!(decoder.frames_decoded(), 1024, "the thread waits for room");
        let asked = Instant::now();
        decoder.stop();
        let took = asked.elapsed();
        assert!(took < Duration::from_millis(100), "stop took {took:?}");
        assert!(finished.load(Ordering::Acquire));

        // Dropping does the same.
        let (decoder, _consumer, _, _) = Decoder::start(&path, OUT_RATE, 1024).unwrap();
        let asked = Instant::now();
        drop(decoder);
        assert!(asked.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn the_thread_ends_when_the_mixer_drops_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let path = tone(dir.path(), "flac", 44_100, true, 10.0);
        let (decoder, consumer, finished, _) = Decoder::start(&path, OUT_RATE, 1024).unwrap();
        drop(consumer);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !finished.load(Ordering::Acquire) {
            assert!(
                Instant::now() < deadline,
                "the thread kept decoding for nobody"
            );
            thread::sleep(Duration::from_millis(1));
        }
        assert!(decoder.frames_decoded() <= 1024);
    }

    #[test]
    fn wait_buffered_returns_for_a_file_shorter_than_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = tone(dir.path(), "wav", 48_000, false, 0.01);
        let (decoder, consumer, _, _) = Decoder::start(&path, OUT_RATE, 8192).unwrap();
        assert!(decoder.wait_buffered(&consumer, 4096, Duration::from_secs(10)));
        assert_eq!(consumer.slots(), 480 * CHANNELS);
        assert!(decoder.is_finished());
    }

    /// Deterministic noise bytes (a linear congruential generator).
    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                (state >> 56) as u8
            })
            .collect()
    }
}
