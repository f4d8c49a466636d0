//! Where the mixer's sound goes: a cpal device (the default one or one named
//! in the configuration), the paced virtual output (no sound card: a server,
//! CI), or a WAV file (offline renders, also paced).
//!
//! Every output runs on a thread of its own and calls [`Mixer::render`] once
//! a period: cpal's callback thread for a device, a thread of ours for the
//! others, sleeping until each period's deadline on an absolute clock so
//! that positions advance in real time without drift. The mixer outlives the
//! outputs: it sits in a [`MixerSlot`] that the running output borrows, so a
//! lost device can be reopened and the music carries on where it was.
//!
//! Each period, the output also tells the sample clock when the first frame
//! it renders is heard, and its latency: a device from the timestamps its
//! callback gets, our own outputs from the period's deadline (see
//! [`SampleClock`](super::mixer::SampleClock)).
//!
//! An output that fails while running (the device vanished, the disk is
//! full) says so through [`Output::failure`]; the audio actor then drops it
//! and reopens one with backoff.

use std::{
    cell::UnsafeCell,
    fs,
    io::BufWriter,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use cpal::{
    FromSample, Sample, SizedSample,
    traits::{DeviceTrait, HostTrait, StreamTrait},
};

use super::{CHANNELS, mixer::Mixer};

/// The mixer, shared by the outputs that succeed one another.
///
/// Exactly one output renders at a time: the running output takes the slot
/// with an atomic flag for each period and gives it back at once. Taking it
/// never waits (a period that finds it taken, which only happens while one
/// output hands over to the next, renders silence), so the audio callback
/// never blocks.
pub struct MixerSlot {
    busy: AtomicBool,
    mixer: UnsafeCell<Mixer>,
}

// SAFETY: the mixer is only reached through `render`, which holds the `busy`
// flag (acquired with Acquire, released with Release) for the whole access,
// so no two threads ever touch it at once; `Mixer` itself is `Send`.
unsafe impl Sync for MixerSlot {}

impl MixerSlot {
    /// A slot holding `mixer`.
    pub fn new(mixer: Mixer) -> Arc<Self> {
        Arc::new(Self {
            busy: AtomicBool::new(false),
            mixer: UnsafeCell::new(mixer),
        })
    }

    /// Renders into `out` (interleaved stereo), whose first frame is heard
    /// at `heard` with the output's `latency` (see
    /// [`SampleClock::mark_heard`](super::mixer::SampleClock::mark_heard));
    /// silence if the slot is taken.
    pub fn render(&self, out: &mut [f32], heard: Instant, latency: Duration) {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            out.fill(0.0);
            return;
        }
        // SAFETY: the flag is ours until the store below.
        let mixer = unsafe { &mut *self.mixer.get() };
        mixer
            .clock_ref()
            .mark_heard(mixer.clock_ref().frames(), heard, latency);
        mixer.render(out);
        self.busy.store(false, Ordering::Release);
    }
}

/// What kind of output is running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// A sound device, by name.
    Device(String),
    /// No sound card: paced, discarded.
    Virtual,
    /// A WAV file, paced.
    Wav(PathBuf),
}

impl OutputKind {
    /// How people see it: the device name, `virtual`, or `wav:PATH`.
    pub fn describe(&self) -> String {
        match self {
            OutputKind::Device(name) => name.clone(),
            OutputKind::Virtual => "virtual".into(),
            OutputKind::Wav(path) => format!("wav:{}", path.display()),
        }
    }
}

/// The stream format an output asks for.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    /// Frames a second; `None`: the device's default (48,000 for ours).
    pub sample_rate: Option<u32>,
    /// Frames per period; `None`: the device's default (1,024 for ours).
    pub period_frames: Option<u32>,
}

/// The rate our own outputs use unless told otherwise.
pub const DEFAULT_RATE: u32 = 48_000;
/// The period our own outputs use unless told otherwise.
pub const DEFAULT_PERIOD: u32 = 1024;

/// An open output.
pub struct Output {
    kind: OutputKind,
    sample_rate: u32,
    period_frames: u32,
    channels: u16,
    failure: Arc<Mutex<Option<String>>>,
    xruns: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Output {
    /// What this output is.
    pub fn kind(&self) -> &OutputKind {
        &self.kind
    }

    /// Frames a second.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Frames per period (for a device with a default buffer, an estimate).
    pub fn period_frames(&self) -> u32 {
        self.period_frames
    }

    /// The device's channel count (the mixer's stereo is mapped onto it).
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Glitches the device reported and survived (ALSA xruns …).
    pub fn xruns(&self) -> u64 {
        self.xruns.load(Ordering::Relaxed)
    }

    /// Why the output stopped working, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("failure lock").clone()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// What [`find_device`] says when the machine has no sound device at all.
pub const NO_DEVICE: &str = "no default sound device";

/// In the message of a device that exists but another program holds: worth
/// waiting for, unlike a device that is not there.
pub const BUSY: &str = "is busy (another program holds it)";

/// Says why a device cannot be used, marking a busy one with [`BUSY`].
fn device_error(name: &str, what: &str, e: &cpal::Error) -> String {
    if e.kind() == cpal::ErrorKind::DeviceBusy {
        format!("sound device '{name}' {BUSY}: {e}")
    } else {
        format!("cannot {what} sound device '{name}': {e}")
    }
}

/// Finds the sound device: the default one, or one by (part of) its name.
/// `None` asks for the default; the error says what exists.
pub fn find_device(name: Option<&str>) -> Result<cpal::Device, String> {
    let host = cpal::default_host();
    match name {
        None => host
            .default_output_device()
            .ok_or_else(|| NO_DEVICE.to_string()),
        Some(wanted) => {
            let mut devices: Vec<(String, cpal::Device)> = host
                .output_devices()
                .map_err(|e| format!("cannot list the sound devices: {e}"))?
                .map(|d| (d.to_string(), d))
                .collect();
            let lower = wanted.to_lowercase();
            let found = devices.iter().position(|(n, _)| n == wanted).or_else(|| {
                devices
                    .iter()
                    .position(|(n, _)| n.to_lowercase().contains(&lower))
            });
            match found {
                Some(i) => Ok(devices.swap_remove(i).1),
                None => {
                    let names: Vec<&str> = devices.iter().map(|(n, _)| n.as_str()).collect();
                    Err(format!(
                        "no sound device named '{wanted}'; the devices are: {}",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ))
                }
            }
        }
    }
}

/// The sample rate a sound device runs at by default.
pub fn device_rate(name: Option<&str>) -> Result<u32, String> {
    let device = find_device(name)?;
    device
        .default_output_config()
        .map(|c| c.sample_rate())
        .map_err(|e| format!("cannot use sound device '{device}': {e}"))
}

/// Opens a sound device and starts rendering `slot` into it.
pub fn open_device(
    device_name: Option<&str>,
    format: Format,
    slot: Arc<MixerSlot>,
) -> Result<Output, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let failure = Arc::new(Mutex::new(None));
    let xruns = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let name = device_name.map(String::from);
    // The stream is made, played and dropped on this thread: cpal streams
    // are not `Send` everywhere.
    let thread = thread::Builder::new()
        .name("audio-device".into())
        .spawn({
            let stop = stop.clone();
            let failure = failure.clone();
            let xruns = xruns.clone();
            move || {
                let opened = build_stream(
                    name.as_deref(),
                    format,
                    slot,
                    failure.clone(),
                    xruns.clone(),
                );
                let stream = match opened {
                    Ok((stream, info)) => {
                        let _ = ready_tx.send(Ok(info));
                        stream
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while !stop.load(Ordering::Acquire) {
                    thread::park_timeout(Duration::from_millis(200));
                }
                drop(stream);
            }
        })
        .map_err(|e| format!("cannot start the audio thread: {e}"))?;
    let (kind, sample_rate, period_frames, channels) = ready_rx
        .recv()
        .map_err(|_| "the audio thread ended while opening the device".to_string())??;
    Ok(Output {
        kind,
        sample_rate,
        period_frames,
        channels,
        failure,
        xruns,
        stop,
        thread: Some(thread),
    })
}

type StreamInfo = (OutputKind, u32, u32, u16);

fn build_stream(
    name: Option<&str>,
    format: Format,
    slot: Arc<MixerSlot>,
    failure: Arc<Mutex<Option<String>>>,
    xruns: Arc<AtomicU64>,
) -> Result<(cpal::Stream, StreamInfo), String> {
    let device = find_device(name)?;
    let device_name = device.to_string();
    let default = device
        .default_output_config()
        .map_err(|e| device_error(&device_name, "use", &e))?;
    let sample_rate = format.sample_rate.unwrap_or(default.sample_rate());
    let config = cpal::StreamConfig {
        channels: default.channels(),
        sample_rate,
        buffer_size: match format.period_frames {
            Some(frames) => cpal::BufferSize::Fixed(frames),
            None => cpal::BufferSize::Default,
        },
    };
    let period = format.period_frames.unwrap_or(DEFAULT_PERIOD);
    let channels = config.channels;
    let on_error = move |e: cpal::Error| {
        match e.kind() {
            // The stream carries on after these: an xrun is a glitch (the
            // mixer counts its own underruns), the others are notices.
            cpal::ErrorKind::Xrun
            | cpal::ErrorKind::DeviceChanged
            | cpal::ErrorKind::RealtimeDenied => {
                xruns.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                let mut failure = failure.lock().expect("failure lock");
                if failure.is_none() {
                    *failure = Some(format!("the sound device failed: {e}"));
                }
            }
        }
    };
    let stream = match default.sample_format() {
        cpal::SampleFormat::F32 => stream::<f32>(&device, &config, slot, on_error),
        cpal::SampleFormat::I16 => stream::<i16>(&device, &config, slot, on_error),
        cpal::SampleFormat::I32 => stream::<i32>(&device, &config, slot, on_error),
        cpal::SampleFormat::U16 => stream::<u16>(&device, &config, slot, on_error),
        other => {
            return Err(format!(
                "sound device '{device_name}' wants {other} samples, which Cantina does not write; choose another device"
            ));
        }
    }
    .map_err(|e| device_error(&device_name, &format!("open at {sample_rate} Hz"), &e))?;
    stream
        .play()
        .map_err(|e| format!("cannot start sound device '{device_name}': {e}"))?;
    Ok((
        stream,
        (
            OutputKind::Device(device_name),
            sample_rate,
            period,
            channels,
        ),
    ))
}

/// Largest period rendered in one go; longer callbacks are rendered in pieces.
pub const MAX_PERIOD: usize = 4096;

fn stream<T: SizedSample + FromSample<f32>>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    slot: Arc<MixerSlot>,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream, cpal::Error> {
    let channels = usize::from(config.channels);
    let rate = config.sample_rate;
    // Allocated here, once: the callback only reuses it.
    let mut stereo = vec![0.0f32; MAX_PERIOD * CHANNELS];
    device.build_output_stream(
        *config,
        move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
            // The buffer's first frame is heard when the device says; the
            // whole buffer is counted rendered now, its last frame heard a
            // buffer later.
            let stamp = info.timestamp();
            let device = stamp.playback.duration_since(stamp.callback);
            let now = Instant::now();
            let buffer = frames_duration(data.len() / channels.max(1), rate);
            let mut offset = 0;
            for chunk in data.chunks_mut(MAX_PERIOD * channels) {
                let frames = chunk.len() / channels;
                let mix = &mut stereo[..frames * CHANNELS];
                let heard = now + device + frames_duration(offset, rate);
                slot.render(mix, heard, device + buffer);
                map_channels(mix, chunk, channels);
                offset += frames;
            }
        },
        on_error,
        // A device that stops calling back without an error is noticed by
        // the player's clock watch; this bounds ALSA's own waits.
        Some(Duration::from_secs(2)),
    )
}

/// How long `frames` last at `rate` (integer arithmetic: fit for the callback).
fn frames_duration(frames: usize, rate: u32) -> Duration {
    Duration::from_nanos(frames as u64 * 1_000_000_000 / u64::from(rate.max(1)))
}

/// Puts the mixer's stereo onto a device's channels: mono gets the average,
/// the first two get left and right, any others silence.
fn map_channels<T: Sample + FromSample<f32>>(stereo: &[f32], out: &mut [T], channels: usize) {
    for (frame, lr) in out.chunks_mut(channels).zip(stereo.chunks(CHANNELS)) {
        match channels {
            1 => frame[0] = T::from_sample(0.5 * (lr[0] + lr[1])),
            _ => {
                frame[0] = T::from_sample(lr[0]);
                frame[1] = T::from_sample(lr[1]);
                for rest in &mut frame[2..] {
                    *rest = T::EQUILIBRIUM;
                }
            }
        }
    }
}

/// Starts the paced virtual output: the mixer runs in real time and the
/// sound is discarded.
pub fn open_virtual(format: Format, slot: Arc<MixerSlot>) -> Result<Output, String> {
    paced(OutputKind::Virtual, format, slot, None)
}

/// Starts writing the mix, in real time, to a 32-bit float WAV file; with
/// `append`, after what an earlier run of this output wrote (a reopen after
/// a failure keeps what was rendered before it).
pub fn open_wav(
    path: &Path,
    format: Format,
    slot: Arc<MixerSlot>,
    append: bool,
) -> Result<Output, String> {
    let rate = format.sample_rate.unwrap_or(DEFAULT_RATE);
    let spec = hound::WavSpec {
        channels: CHANNELS as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let fail =
        |e: &dyn std::fmt::Display| format!("cannot write the WAV output {}: {e}", path.display());
    let appended = if append {
        hound::WavWriter::append(path)
            .ok()
            .filter(|w| w.spec() == spec)
    } else {
        None
    };
    let mut writer = match appended {
        Some(writer) => writer,
        None => {
            let file = fs::File::create(path).map_err(|e| fail(&e))?;
            hound::WavWriter::new(BufWriter::new(file), spec).map_err(|e| fail(&e))?
        }
    };
    // The header reaches the disk now: a full disk fails here, not in the
    // first period.
    writer.flush().map_err(|e| fail(&e))?;
    paced(
        OutputKind::Wav(path.to_path_buf()),
        format,
        slot,
        Some(writer),
    )
}

type Wav = hound::WavWriter<BufWriter<fs::File>>;

/// An output of our own: one period every period's duration, on an absolute
/// clock, optionally written to a WAV file.
fn paced(
    kind: OutputKind,
    format: Format,
    slot: Arc<MixerSlot>,
    mut wav: Option<Wav>,
) -> Result<Output, String> {
    let rate = format.sample_rate.unwrap_or(DEFAULT_RATE);
    let period = format
        .period_frames
        .unwrap_or(DEFAULT_PERIOD)
        .min(MAX_PERIOD as u32);
    let stop = Arc::new(AtomicBool::new(false));
    let failure = Arc::new(Mutex::new(None));
    let thread = thread::Builder::new()
        .name("audio-paced".into())
        .spawn({
            let stop = stop.clone();
            let failure = failure.clone();
            move || {
                let mut buffer = vec![0.0f32; period as usize * CHANNELS];
                let mut started = Instant::now();
                let mut periods: u64 = 0;
                let mut due = started;
                // Each period is rendered when its first frame is due, so
                // that frame is "heard" then (a WAV file holds it from then
                // on); the period's last frame is due a period later: the
                // mixing runs up to one period ahead.
                let latency = frames_duration(period as usize, rate);
                while !stop.load(Ordering::Acquire) {
                    slot.render(&mut buffer, due, latency);
                    if let Some(writer) = wav.as_mut() {
                        let written = buffer.iter().try_for_each(|s| writer.write_sample(*s));
                        if let Err(e) = written.and_then(|()| writer.flush()) {
                            *failure.lock().expect("failure lock") =
                                Some(format!("writing the WAV output failed: {e}"));
                            return;
                        }
                    }
                    periods += 1;
                    due = started
                        + Duration::from_secs_f64(
                            periods as f64 * f64::from(period) / f64::from(rate),
                        );
                    // After a stall (a suspended machine), carry on from now
                    // rather than render the gap in a burst.
                    if Instant::now() > due + Duration::from_millis(200) {
                        started = Instant::now();
                        periods = 0;
                        due = started;
                    }
                    // Parking may end early (an unpark, or spuriously).
                    while let Some(wait) = due.checked_duration_since(Instant::now()) {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        thread::park_timeout(wait);
                    }
                }
                if let Some(writer) = wav
                    && let Err(e) = writer.finalize()
                {
                    *failure.lock().expect("failure lock") =
                        Some(format!("finishing the WAV output failed: {e}"));
                }
            }
        })
        .map_err(|e| format!("cannot start the audio thread: {e}"))?;
    Ok(Output {
        kind,
        sample_rate: rate,
        period_frames: period,
        channels: CHANNELS as u16,
        failure,
        xruns: Arc::default(),
        stop,
        thread: Some(thread),
    })
}
