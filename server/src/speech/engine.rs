//! The text-to-speech engines and the one thread that runs them: espeak-ng
//! keeps global state, and piper is a program fed line by line, so each
//! engine lives on its own thread and takes one job at a time. Jobs stream
//! their samples out as they are made.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc,
    },
};

use tokio::sync::oneshot;

pub use super::synth::{Engine, Params, Piece, VoiceInfo};
use super::{espeak::Espeak, settings::EngineChoice};

/// Samples from a job: mono at the engine's rate.
#[derive(Debug)]
pub enum Out {
    /// More samples.
    Audio(Vec<i16>),
    /// Sentence `n` is done.
    SentenceEnd(usize),
    /// The job is over: `Err` says why it failed.
    Done(Result<(), String>),
}

/// A job for the engine's thread.
enum Job {
    Synth {
        sentences: Vec<String>,
        params: Params,
        out: std_mpsc::Sender<Out>,
        cancel: Arc<AtomicBool>,
    },
}

/// What the engine's thread said at start.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    /// For people.
    pub name: String,
    /// Part of the cache keys.
    pub id: String,
    /// Frames a second.
    pub rate: u32,
    /// The voices it offers, listed once at start.
    pub voices: Vec<VoiceInfo>,
    /// It also takes speaker numbers as voices (a multi-speaker piper model).
    pub speakers: bool,
}

/// The engine's thread: jobs go in, samples come out. Dropping the last handle ends
/// the thread, but for espeak-ng's, which lives as long as the process.
pub struct EngineThread {
    jobs: std_mpsc::Sender<Job>,
    info: EngineInfo,
}

impl EngineThread {
    /// Opens the chosen engine on its own thread.
    ///
    /// # Errors
    ///
    /// Why the engine cannot run (not installed, no model …), saying what to
    /// do; `Ok(None)` for `none`.
    pub async fn start(choice: &EngineChoice) -> Result<Option<Arc<Self>>, String> {
        match choice {
            EngineChoice::None => Ok(None),
            // libespeak-ng has one global state per process: one thread runs
            // it for every server in the process (tests run several), for
            // the process's life; a later start shares it.
            EngineChoice::Espeak => {
                static ESPEAK: tokio::sync::Mutex<Option<Arc<EngineThread>>> =
                    tokio::sync::Mutex::const_new(None);
                let mut shared = ESPEAK.lock().await;
                if let Some(engine) = shared.as_ref() {
                    return Ok(Some(engine.clone()));
                }
                let engine = Arc::new(Self::open(choice).await?);
                *shared = Some(engine.clone());
                Ok(Some(engine))
            }
            EngineChoice::Piper(_) => Ok(Some(Arc::new(Self::open(choice).await?))),
        }
    }

    async fn open(choice: &EngineChoice) -> Result<Self, String> {
        let (jobs, rx) = std_mpsc::channel::<Job>();
        let (ready_tx, ready) = oneshot::channel();
        let choice = choice.clone();
        std::thread::Builder::new()
            .name("speech-engine".into())
            .spawn(move || {
                let engine: Result<Box<dyn Engine>, String> = match &choice {
                    EngineChoice::Espeak => Espeak::open().map(|e| Box::new(e) as Box<dyn Engine>),
                    EngineChoice::Piper(model) => {
                        Piper::open(model).map(|e| Box::new(e) as Box<dyn Engine>)
                    }
                    EngineChoice::None => unreachable!("handled above"),
                };
                let mut engine = match engine {
                    Ok(mut engine) => {
                        let _ = ready_tx.send(Ok(EngineInfo {
                            name: engine.name(),
                            id: engine.id(),
                            rate: engine.rate(),
                            voices: engine.voices(),
                            speakers: matches!(choice, EngineChoice::Piper(_)),
                        }));
                        engine
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                serve(engine.as_mut(), &rx);
            })
            .map_err(|e| format!("cannot start the speech engine's thread: {e}"))?;
        let info = ready
            .await
            .map_err(|_| "the speech engine's thread ended at start".to_string())??;
        Ok(Self { jobs, info })
    }

    /// The engine.
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// Starts speaking; samples arrive on the returned channel as made.
    pub fn synth(
        &self,
        sentences: Vec<String>,
        params: Params,
        cancel: Arc<AtomicBool>,
    ) -> std_mpsc::Receiver<Out> {
        let (out, rx) = std_mpsc::channel();
        let job = Job::Synth {
            sentences,
            params,
            out: out.clone(),
            cancel,
        };
        if self.jobs.send(job).is_err() {
            let _ = out.send(Out::Done(Err("the speech engine has stopped".into())));
        }
        rx
    }

    /// The voices the engine offers.
    pub fn voices(&self) -> Vec<VoiceInfo> {
        self.info.voices.clone()
    }

    /// Whether the engine has `voice`: checked against the list made at
    /// start, so no request waits behind a synthesis, and no name the
    /// engine does not list ever reaches it.
    ///
    /// # Errors
    ///
    /// Which voice is missing.
    pub fn check_voice(&self, voice: &str) -> Result<(), String> {
        super::synth::check_voice(&self.info.voices, self.info.speakers, voice)
    }
}

fn serve(engine: &mut dyn Engine, jobs: &std_mpsc::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Synth {
                sentences,
                params,
                out,
                cancel,
            } => {
                let result = engine.synth(&sentences, &params, &mut |piece| {
                    if cancel.load(Ordering::Relaxed) {
                        return false;
                    }
                    let sent = match piece {
                        Piece::Audio(pcm) => out.send(Out::Audio(pcm.to_vec())),
                        Piece::SentenceEnd(n) => out.send(Out::SentenceEnd(n)),
                    };
                    // Nobody listens any more: stop.
                    sent.is_ok()
                });
                let _ = out.send(Out::Done(result));
            }
        }
    }
}

/// The `piper` program with one voice model: text in on stdin, one line a
/// sentence; raw 16-bit mono out on stdout, as made.
struct Piper {
    model: PathBuf,
    rate: u32,
    name: String,
}

impl Piper {
    fn open(model: &Path) -> Result<Self, String> {
        if !model.is_file() {
            return Err(format!(
                "the piper voice model {} does not exist: give the path of a .onnx voice you have (with its .onnx.json beside it), or set speech_engine to `espeak-ng`",
                model.display()
            ));
        }
        let config = PathBuf::from(format!("{}.json", model.display()));
        let text = std::fs::read_to_string(&config).map_err(|e| {
            format!(
                "cannot read the piper voice's configuration {} ({e}): it comes with the model",
                config.display()
            )
        })?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", config.display()))?;
        let rate = json["audio"]["sample_rate"]
            .as_u64()
            .and_then(|r| u32::try_from(r).ok())
            .filter(|r| (8_000..=96_000).contains(r))
            .ok_or_else(|| format!("{} gives no audio.sample_rate", config.display()))?;
        let version = Command::new("piper")
            .arg("--version")
            .output()
            .map_err(|e| {
                format!(
                    "the piper program cannot be run ({e}): install it (pip install piper-tts) so that `piper` is on the PATH, or set speech_engine to `espeak-ng`"
                )
            })?;
        let name = format!(
            "piper {} ({})",
            String::from_utf8_lossy(&version.stdout).trim(),
            model.file_stem().unwrap_or_default().to_string_lossy()
        );
        Ok(Self {
            model: model.to_path_buf(),
            rate,
            name,
        })
    }
}

impl Engine for Piper {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn id(&self) -> String {
        format!("piper:{}", self.model.display())
    }

    fn rate(&self) -> u32 {
        self.rate
    }

    fn voices(&mut self) -> Vec<VoiceInfo> {
        vec![VoiceInfo {
            name: "default".into(),
            description: self.name.clone(),
            gender: String::new(),
        }]
    }

    fn check_voice(&mut self, voice: &str) -> Result<(), String> {
        // One model is one voice; a multi-speaker model takes a number.
        if voice == "default" || voice.parse::<u32>().is_ok() || voice.starts_with("en") {
            Ok(())
        } else {
            Err(format!(
                "piper's model has no voice '{voice}': use `default`, or a speaker number for a multi-speaker model"
            ))
        }
    }

    fn synth(
        &mut self,
        sentences: &[String],
        params: &Params,
        sink: &mut dyn FnMut(Piece<'_>) -> bool,
    ) -> Result<(), String> {
        let mut command = Command::new("piper");
        command
            .arg("--model")
            .arg(&self.model)
            .arg("--output_raw")
            // 165 words a minute is piper's own pace.
            .arg("--length_scale")
            .arg(format!("{:.3}", 165.0 / f64::from(params.rate.max(1))));
        if let Ok(speaker) = params.voice.parse::<u32>() {
            command.arg("--speaker").arg(speaker.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run piper: {e}"))?;
        let mut stdin = child.stdin.take().expect("piped");
        let lines: Vec<String> = sentences.iter().map(|s| s.replace('\n', " ")).collect();
        let writer = std::thread::spawn(move || {
            for line in lines {
                if writeln!(stdin, "{line}").is_err() {
                    break;
                }
            }
        });
        // Drained as it comes, so a talkative piper never blocks on a full pipe.
        let stderr = child.stderr.take().expect("piped");
        let errors = std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .filter(|l| !l.trim().is_empty())
                .take(200)
                .collect::<Vec<_>>()
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut buf = vec![0u8; 8192];
        let mut carry: Option<u8> = None;
        let mut samples = Vec::new();
        let mut stopped = false;
        let mut read_error = None;
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    read_error = Some(format!("reading piper's output failed: {e}"));
                    let _ = child.kill();
                    break;
                }
            };
            samples.clear();
            let mut bytes = buf[..n].iter().copied();
            if let Some(low) = carry.take()
                && let Some(high) = bytes.next()
            {
                samples.push(i16::from_le_bytes([low, high]));
            }
            let rest: Vec<u8> = bytes.collect();
            let mut pairs = rest.chunks_exact(2);
            samples.extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
            carry = pairs.remainder().first().copied();
            if !sink(Piece::Audio(&samples)) {
                stopped = true;
                let _ = child.kill();
                break;
            }
        }
        drop(stdout);
        let _ = writer.join();
        let status = child.wait().map_err(|e| e.to_string())?;
        let errors = errors.join().unwrap_or_default();
        if stopped {
            // Killed because the utterance was stopped: not a failure.
            return Ok(());
        }
        if let Some(e) = read_error {
            return Err(e);
        }
        if !status.success() {
            let tail = errors[errors.len().saturating_sub(5)..].join(" ");
            return Err(format!("piper failed ({status}): {tail}"));
        }
        Ok(())
    }
}

/// Whether `EngineThread` is usable from the speech actor.
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_piper_model_that_does_not_exist_is_refused_with_what_to_do() {
        let Err(e) =
            EngineThread::start(&EngineChoice::Piper("/nonexistent/voice.onnx".into())).await
        else {
            panic!("started");
        };
        assert!(e.contains("does not exist"), "{e}");
    }

    #[tokio::test]
    async fn espeak_makes_speech_sentence_by_sentence() {
        let engine = EngineThread::start(&EngineChoice::Espeak)
            .await
            .expect("espeak-ng is installed by ./dev.sh")
            .expect("an engine");
        assert!(engine.info().rate >= 8000);
        let params = Params {
            voice: "en-us".into(),
            rate: 175,
            pitch: 50,
        };
        let rx = engine.synth(
            vec!["Hello there.".into(), "General Kenobi!".into()],
            params,
            Arc::new(AtomicBool::new(false)),
        );
        let (mut samples, mut ends, mut done) = (0usize, Vec::new(), None);
        while let Ok(out) = rx.recv() {
            match out {
                Out::Audio(pcm) => {
                    assert!(ends.len() < 2);
                    samples += pcm.len();
                }
                Out::SentenceEnd(n) => ends.push((n, samples)),
                Out::Done(result) => {
                    done = Some(result);
                    break;
                }
            }
        }
        done.unwrap().unwrap();
        assert_eq!(ends.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 1]);
        // About a second of speech each, not silence.
        assert!(ends[0].1 > engine.info().rate as usize / 3, "{ends:?}");
        assert!(ends[1].1 > ends[0].1 + engine.info().rate as usize / 3);
        assert!(engine.check_voice("en-us+robosoft").is_ok());
        assert!(engine.check_voice("xx-nonexistent").is_err());
        let voices = engine.voices();
        assert!(voices.iter().any(|v| v.name.starts_with("en")));
        assert!(
            voices.iter().any(|v| v.name == "+robosoft"),
            "variants are listed"
        );
    }
}
