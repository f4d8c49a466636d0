//! An utterance's feeder thread: takes the engine's samples (or a whole
//! clip) as they come, turns them into stereo at the output's rate, measures
//! their loudness for the eyes, and fills the speech voice's ring, napping
//! while the ring is full. The first samples make the voice start; the rest
//! follow while they are still being made.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc,
    },
    time::Duration,
};

use rtrb::Producer;
use tokio::sync::{mpsc, oneshot};

use super::{cache::Clip, engine::Out, envelope::Envelope};
use crate::audio::decode::StreamResampler;

/// How long the feeder naps when the ring is full.
const NAP: Duration = Duration::from_millis(5);

/// Where an utterance's samples come from.
pub enum Input {
    /// An engine's job: mono at `rate`.
    Engine {
        /// The job's samples.
        rx: std_mpsc::Receiver<Out>,
        /// Their rate.
        rate: u32,
    },
    /// A whole clip (cached or uploaded).
    Clip(Clip),
}

/// How far the feeder got, for estimates while it runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Sentences made so far.
    pub sentences: usize,
    /// Frames at the output's rate pushed so far.
    pub frames: u64,
    /// All of it is made.
    pub done: bool,
}

/// How the feeding ended.
#[derive(Debug, Default)]
pub struct FeedEnd {
    /// The engine's samples, kept for the cache (only when all were made).
    pub made: Option<Clip>,
    /// Frames at the output's rate pushed.
    pub frames: u64,
    /// What went wrong.
    pub error: Option<String>,
    /// Stopped before the end.
    pub cancelled: bool,
}

/// What the feeder is given.
pub struct Feeder {
    /// The samples.
    pub input: Input,
    /// The voice's ring.
    pub producer: Producer<f32>,
    /// Set after the last sample.
    pub finished: Arc<AtomicBool>,
    /// The output's rate.
    pub out_rate: u32,
    /// Set to stop.
    pub cancel: Arc<AtomicBool>,
    /// Told once enough is buffered to start (or that nothing came).
    pub ready: oneshot::Sender<Result<(), String>>,
    /// Frames buffered before the voice may start.
    pub prefill: u64,
    /// Loudness levels, one per envelope window, in order.
    pub levels: mpsc::UnboundedSender<Vec<u8>>,
    /// Shared progress.
    pub progress: Arc<Mutex<Progress>>,
    /// Keep the engine's samples for the cache.
    pub keep: bool,
}

impl Feeder {
    /// Runs on its own thread until every sample is in the ring, the
    /// utterance is stopped or the voice is gone.
    pub fn run(self) -> FeedEnd {
        let Feeder {
            input,
            mut producer,
            finished,
            out_rate,
            cancel,
            ready,
            prefill,
            levels,
            progress,
            keep,
        } = self;
        let mut ready = Some(ready);
        let mut end = FeedEnd::default();
        let mut made = keep.then(Vec::new);
        let mut envelope = Envelope::new(out_rate);
        let mut resampler: Option<(u32, u16, StreamResampler)> = None;
        let mut stereo = Vec::new();
        let mut out = Vec::new();
        let mut level_buf = Vec::new();
        let mut source_rate = 0;

        // Converts, measures and pushes one piece; false: stop.
        let mut take = |pcm: &[i16],
                        channels: u16,
                        rate: u32,
                        last: bool,
                        end: &mut FeedEnd,
                        ready: &mut Option<oneshot::Sender<Result<(), String>>>|
         -> bool {
            source_rate = rate;
            if resampler
                .as_ref()
                .is_none_or(|(r, c, _)| *r != rate || *c != channels)
            {
                match StreamResampler::new(rate, out_rate) {
                    Ok(r) => resampler = Some((rate, channels, r)),
                    Err(e) => {
                        end.error = Some(format!("cannot convert speech at {rate} Hz: {e}"));
                        return false;
                    }
                }
            }
            let (_, _, rs) = resampler.as_mut().expect("set above");
            stereo.clear();
            match channels {
                1 => stereo.extend(pcm.iter().flat_map(|&s| {
                    let x = f32::from(s) / 32768.0;
                    [x, x]
                })),
                _ => stereo.extend(pcm.iter().map(|&s| f32::from(s) / 32768.0)),
            }
            out.clear();
            let converted = rs
                .push(&stereo, &mut out)
                .and_then(|()| if last { rs.finish(&mut out) } else { Ok(()) });
            if let Err(e) = converted {
                end.error = Some(format!("converting speech failed: {e}"));
                return false;
            }
            level_buf.clear();
            envelope.push(&out, &mut level_buf);
            if last {
                envelope.finish(&mut level_buf);
            }
            if !level_buf.is_empty() {
                let _ = levels.send(level_buf.clone());
            }
            let mut rest = &out[..];
            while !rest.is_empty() {
                if cancel.load(Ordering::Relaxed) || producer.is_abandoned() {
                    end.cancelled = true;
                    return false;
                }
                let n = producer.slots().min(rest.len());
                if n == 0 {
                    // The voice must start to make room.
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                    std::thread::sleep(NAP);
                    continue;
                }
                // Whole frames only.
                let n = n - n % 2;
                if n == 0 {
                    std::thread::sleep(NAP);
                    continue;
                }
                if let Ok(chunk) = producer.write_chunk_uninit(n) {
                    chunk.fill_from_iter(rest[..n].iter().copied());
                }
                rest = &rest[n..];
                end.frames += (n / 2) as u64;
                progress.lock().expect("progress").frames = end.frames;
            }
            if end.frames >= prefill
                && let Some(ready) = ready.take()
            {
                let _ = ready.send(Ok(()));
            }
            true
        };

        match input {
            Input::Clip(clip) => {
                let channels = clip.channels;
                let rate = clip.rate;
                // In pieces, so that stopping is quick and the ring fills early.
                let piece = (rate as usize / 10).max(1) * usize::from(channels);
                let pieces: Vec<&[i16]> = clip.samples.chunks(piece).collect();
                let n = pieces.len();
                for (i, pcm) in pieces.into_iter().enumerate() {
                    if !take(pcm, channels, rate, i + 1 == n, &mut end, &mut ready) {
                        break;
                    }
                }
            }
            Input::Engine { rx, rate } => {
                // One piece behind, so the last is known as such.
                let mut pending: Option<Vec<i16>> = None;
                loop {
                    let message = rx.recv().unwrap_or(Out::Done(Err(
                        "the speech engine stopped in the middle of an utterance".into(),
                    )));
                    match message {
                        Out::Audio(pcm) => {
                            if let Some(m) = made.as_mut() {
                                m.extend_from_slice(&pcm);
                            }
                            if let Some(previous) = pending.replace(pcm)
                                && !take(&previous, 1, rate, false, &mut end, &mut ready)
                            {
                                pending = None;
                                break;
                            }
                        }
                        Out::SentenceEnd(n) => {
                            progress.lock().expect("progress").sentences = n + 1;
                        }
                        Out::Done(result) => {
                            if let Err(e) = result {
                                end.error = Some(e);
                                made = None;
                            }
                            let last = pending.take().unwrap_or_default();
                            take(&last, 1, rate, true, &mut end, &mut ready);
                            break;
                        }
                    }
                }
                if pending.is_some() || end.cancelled {
                    made = None;
                }
            }
        }
        if end.cancelled || end.error.is_some() {
            made = None;
        }
        end.made = made.map(|samples| Clip {
            samples,
            channels: 1,
            rate: source_rate,
        });
        finished.store(true, Ordering::Release);
        progress.lock().expect("progress").done = true;
        if let Some(ready) = ready.take() {
            let _ = ready.send(if end.frames > 0 {
                Ok(())
            } else {
                Err(end
                    .error
                    .clone()
                    .unwrap_or_else(|| "the speech had no samples".into()))
            });
        }
        end
    }
}
