//! `cantina.v1.SpeechService`: Speak, SpeakAudio (a client-streaming
//! upload), StopSpeech and ListVoices over the [`Speech`] handle. Every
//! event an RPC causes carries a correlation id (the `x-correlation-id`
//! metadata when given, else a new one).

use cantina::v1::{
    AudioEncoding, ListVoicesRequest, ListVoicesResponse, SpeakAudioRequest, SpeakRequest,
    SpeakResponse, StopSpeechRequest, StopSpeechResponse, Voice,
    speech_service_server::SpeechService,
};
use futures_util::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::speech::{SpeakOptions, Speech, SpeechError, Spoken, Upload};

/// The SpeechService implementation.
pub struct SpeechApi {
    speech: Speech,
}

impl SpeechApi {
    /// A service over `speech`.
    pub fn new(speech: Speech) -> Self {
        Self { speech }
    }
}

fn status(e: SpeechError) -> Status {
    match e {
        SpeechError::Invalid(m) => Status::invalid_argument(m),
        SpeechError::NotFound(m) => Status::not_found(m),
        SpeechError::Unavailable(m) => Status::unavailable(m),
        SpeechError::Busy(m) => Status::resource_exhausted(m),
        SpeechError::Stopped(m) => Status::aborted(m),
    }
}

fn response(spoken: Spoken) -> Response<SpeakResponse> {
    Response::new(SpeakResponse {
        speech_id: spoken.id,
        duration: prost_types::Duration::try_from(spoken.duration).ok(),
        cached: spoken.cached,
        duration_estimated: spoken.estimated,
        engine: spoken.engine,
    })
}

fn options(
    voice: String,
    cache_key: String,
    duck_level: Option<f64>,
    duck_fade: Option<prost_types::Duration>,
) -> Result<SpeakOptions, Status> {
    let duck_fade = duck_fade
        .map(std::time::Duration::try_from)
        .transpose()
        .map_err(|_| Status::invalid_argument("duck_fade must not be negative"))?;
    if let Some(level) = duck_level
        && !(0.0..=1.0).contains(&level)
    {
        return Err(Status::invalid_argument(format!(
            "duck_level {level} is outside 0.0–1.0"
        )));
    }
    Ok(SpeakOptions {
        voice: (!voice.trim().is_empty()).then(|| voice.trim().to_string()),
        cache_key: (!cache_key.is_empty()).then_some(cache_key),
        duck_level: duck_level.map(|l| l as f32),
        duck_fade,
    })
}

/// Runs `f` with the request's correlation id (or a new one) on the events it causes.
async fn correlated<T, F: Future<Output = T>>(metadata: &tonic::metadata::MetadataMap, f: F) -> T {
    let id = metadata
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    crate::bus::with_correlation(id, f).await
}

#[tonic::async_trait]
impl SpeechService for SpeechApi {
    async fn speak(
        &self,
        request: Request<SpeakRequest>,
    ) -> Result<Response<SpeakResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let options = options(r.voice, r.cache_key, r.duck_level, r.duck_fade)?;
        let spoken = correlated(&metadata, self.speech.speak(&r.text, options))
            .await
            .map_err(status)?;
        Ok(response(spoken))
    }

    async fn speak_audio(
        &self,
        request: Request<Streaming<SpeakAudioRequest>>,
    ) -> Result<Response<SpeakResponse>, Status> {
        let (metadata, _, mut stream) = request.into_parts();
        let max = self.speech.settings().upload_max;
        let mut header = None;
        let mut bytes = Vec::new();
        let mut first = true;
        while let Some(part) = stream.next().await {
            let part = part?;
            if first {
                header = part.header;
                first = false;
            }
            if (bytes.len() + part.data.len()) as u64 > max {
                return Err(Status::invalid_argument(format!(
                    "the clip is over {max} bytes (speech_upload_max): send a shorter or more compressed clip"
                )));
            }
            bytes.extend_from_slice(&part.data);
        }
        let header = header.unwrap_or_default();
        let upload = match AudioEncoding::try_from(header.encoding) {
            Ok(AudioEncoding::Unspecified) => Upload::Encoded(bytes),
            Ok(AudioEncoding::PcmS16le) => Upload::Raw {
                bytes,
                rate: header.sample_rate,
                channels: u16::try_from(header.channels).unwrap_or(0),
            },
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown encoding {}: use AUDIO_ENCODING_UNSPECIFIED (a wav, mp3, ogg or flac file) or AUDIO_ENCODING_PCM_S16LE",
                    header.encoding
                )));
            }
        };
        let options = options(
            String::new(),
            header.cache_key,
            header.duck_level,
            header.duck_fade,
        )?;
        let spoken = correlated(&metadata, self.speech.play_upload(upload, options))
            .await
            .map_err(status)?;
        Ok(response(spoken))
    }

    async fn stop_speech(
        &self,
        request: Request<StopSpeechRequest>,
    ) -> Result<Response<StopSpeechResponse>, Status> {
        let id = request.into_inner().speech_id;
        let n = self
            .speech
            .stop((!id.is_empty()).then_some(id))
            .await
            .map_err(status)?;
        Ok(Response::new(StopSpeechResponse {
            stopped: u32::try_from(n).unwrap_or(u32::MAX),
        }))
    }

    async fn list_voices(
        &self,
        _request: Request<ListVoicesRequest>,
    ) -> Result<Response<ListVoicesResponse>, Status> {
        let voices = self.speech.voices().await.map_err(status)?;
        Ok(Response::new(ListVoicesResponse {
            voices: voices
                .into_iter()
                .map(|v| Voice {
                    name: v.name,
                    description: v.description,
                    gender: v.gender,
                })
                .collect(),
            current: self.speech.state().voice,
        }))
    }
}
