//! `cantina.v1.SystemService`: the droid's state (GetStatus), its bus events
//! as a stream (WatchEvents), its mode (SetMode), and clients' events put on
//! the bus (PublishEvent, by the rules of `bus::client`). Conversions between the
//! domain and proto types live here and nowhere else.

use std::{pin::Pin, sync::Arc, time::SystemTime};

use cantina::v1::{
    self as pb, AudioStatus, BusEvent, EyesStatus, GetStatusRequest, PublishEventRequest,
    PublishEventResponse, SetModeRequest, SetModeResponse, SubsystemStatus, SystemStatus,
    WatchEventsRequest, system_service_server::SystemService,
};
use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::{debug, info};

use super::{Auth, Jail, StreamLimits};
use crate::{
    bus::{Event, Item},
    droid::Droid,
    lifecycle::ServiceStatus,
    modes::Mode,
};

/// The SystemService implementation.
pub struct SystemApi {
    /// What it reports on and acts on.
    droid: Arc<Droid>,
    /// The caps WatchEvents streams count against (GetStatus shows them).
    streams: StreamLimits,
    /// The token check, whose refusals GetStatus counts.
    auth: Auth,
    /// The peers' strikes and bans, which GetStatus counts.
    jail: Jail,
}

impl SystemApi {
    /// A service over `droid`, its streams counted against `streams`,
    /// reporting the refusals of `auth` and the bans of `jail`.
    pub fn new(droid: Arc<Droid>, streams: StreamLimits, auth: Auth, jail: Jail) -> Self {
        Self {
            droid,
            streams,
            auth,
            jail,
        }
    }

    /// The gRPC edge, for GetStatus.
    fn edge(&self) -> pb::EdgeStatus {
        let counts = self.streams.counts();
        let jail = self.jail.counts();
        let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        pb::EdgeStatus {
            open_streams: small(counts.open),
            max_streams: small(counts.max),
            max_streams_per_peer: small(counts.per_peer),
            streams_refused: counts.refused,
            auth_failures: self.auth.failures(),
            stream_peers: small(counts.peers),
            peers_banned: small(jail.banned),
            peer_bans: jail.bans,
            connections_refused: jail.refused,
            strikes: jail.strikes,
        }
    }
}

/// The topic of the marker that tells a client how many events it missed.
pub const MISSED_TOPIC: &str = "bus.events.missed";

fn mode_to_proto(mode: Mode) -> pb::Mode {
    match mode {
        Mode::Startup => pb::Mode::Startup,
        Mode::Idle => pb::Mode::Idle,
        Mode::Ambient => pb::Mode::Ambient,
        Mode::Interactive => pb::Mode::Interactive,
    }
}

fn mode_from_proto(value: i32) -> Result<Mode, Status> {
    match pb::Mode::try_from(value) {
        Ok(pb::Mode::Idle) => Ok(Mode::Idle),
        Ok(pb::Mode::Ambient) => Ok(Mode::Ambient),
        Ok(pb::Mode::Interactive) => Ok(Mode::Interactive),
        _ => Err(Status::invalid_argument(
            "mode must be MODE_IDLE, MODE_AMBIENT or MODE_INTERACTIVE (STARTUP is entered only at boot and on reset)",
        )),
    }
}

fn status_to_proto(status: ServiceStatus) -> pb::ServiceStatus {
    match status {
        ServiceStatus::Starting => pb::ServiceStatus::Starting,
        ServiceStatus::Running => pb::ServiceStatus::Running,
        ServiceStatus::Degraded => pb::ServiceStatus::Degraded,
        ServiceStatus::Error => pb::ServiceStatus::Error,
        ServiceStatus::Stopping => pb::ServiceStatus::Stopping,
        ServiceStatus::Stopped => pb::ServiceStatus::Stopped,
    }
}

fn duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or_default()
}

fn event_to_proto(event: &Event) -> BusEvent {
    BusEvent {
        topic: event.name().to_string(),
        timestamp: Some(event.timestamp.into()),
        correlation_id: event.correlation_id.to_string(),
        source: event.source.to_string(),
        payload: Some(cantina::json::struct_from_json(event.payload.clone())),
        seq: event.seq,
        metadata: event.metadata.clone().into_iter().collect(),
        missed: 0,
    }
}

fn missed_marker(missed: u64) -> BusEvent {
    BusEvent {
        topic: MISSED_TOPIC.to_string(),
        timestamp: Some(SystemTime::now().into()),
        source: "bus".into(),
        payload: Some(cantina::json::struct_from_json(serde_json::json!({
            "missed": missed,
            "reason": "this client fell behind; the server does not wait for slow readers",
        }))),
        missed,
        ..BusEvent::default()
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<BusEvent, Status>> + Send>>;

#[tonic::async_trait]
impl SystemService for SystemApi {
    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<SystemStatus>, Status> {
        let droid = &self.droid;
        let subsystems = droid
            .supervisor
            .snapshot()
            .into_iter()
            .map(|r| SubsystemStatus {
                name: r.name.to_string(),
                status: status_to_proto(r.status) as i32,
                message: r.message,
                uptime: r.running_since.map(|t| duration(t.elapsed())),
                since: Some(r.since.into()),
                critical: r.critical,
            })
            .collect();
        Ok(Response::new(SystemStatus {
            version: droid.info.version.to_string(),
            uptime: Some(duration(droid.info.uptime())),
            mode: mode_to_proto(droid.modes.current()) as i32,
            session_id: droid.info.session_id.clone(),
            subsystems,
            audio: Some(audio_to_proto(&droid.audio.state())),
            eyes: Some(eyes_to_proto(&droid.eyes.state())),
            speech: Some(speech_to_proto(&droid.speech.state())),
            servos: Some(servos_to_proto(&droid.servos.state())),
            plans: droid
                .plans
                .state()
                .active
                .iter()
                .map(super::plans::summary_to_proto)
                .collect(),
            started_at: Some(droid.info.started_at.into()),
            bus: Some(cantina::json::struct_from_json(droid.bus.metrics())),
            edge: Some(self.edge()),
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let permit = self.streams.admit("WatchEvents", &request)?;
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let topics = request.into_inner().topics;
        let subscription = self
            .droid
            .bus
            .subscribe_glob(&topics)
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .name(format!("watch {peer}"));
        let events = subscription.stream();
        debug!(%peer, ?topics, "event watcher connected");
        let stream = futures_util::stream::unfold(events, |mut events| async move {
            let item = events.next().await?;
            let message = match item {
                Item::Event(event) => event_to_proto(&event),
                Item::Missed(n) => missed_marker(n),
            };
            Some((Ok(message), events))
        })
        // Streams end when shutdown begins, so they never hold it up.
        .take_until(self.droid.shutdown.wait_owned());
        Ok(Response::new(permit.hold(Box::pin(stream))))
    }

    async fn set_mode(
        &self,
        request: Request<SetModeRequest>,
    ) -> Result<Response<SetModeResponse>, Status> {
        let target = mode_from_proto(request.into_inner().mode)?;
        let change = self
            .droid
            .modes
            .set(target)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(SetModeResponse {
            mode: mode_to_proto(change.to) as i32,
            previous_mode: mode_to_proto(change.from) as i32,
            changed: change.changed(),
            message: change.describe(),
        }))
    }

    async fn publish_event(
        &self,
        request: Request<PublishEventRequest>,
    ) -> Result<Response<PublishEventResponse>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let PublishEventRequest {
            topic,
            payload,
            correlation_id,
        } = request.into_inner();
        let correlation_id = super::command::correlation_id(correlation_id)?;
        let payload = payload
            .map(|p| cantina::json::struct_to_json(&p))
            .unwrap_or_default();
        let draft = crate::bus::client::draft(&topic, payload)?;
        let topic = draft.name().to_string();
        let seq = self
            .droid
            .bus
            .publish(draft.correlation_id(&correlation_id).meta("peer", &peer))
            .ok_or_else(|| {
                Status::unavailable(
                    "the event was not published: the event bus is closed (the server is shutting down)",
                )
            })?;
        info!(%topic, %peer, seq, correlation_id = %correlation_id, "a client published an event");
        Ok(Response::new(PublishEventResponse {
            topic,
            correlation_id,
            seq,
        }))
    }
}

/// What the speech does, for GetStatus.
fn speech_to_proto(state: &crate::speech::SpeechState) -> pb::SpeechStatus {
    pb::SpeechStatus {
        engine: state.engine.clone(),
        engine_ready: state.engine_ready,
        voice: state.voice.clone(),
        speaking: state.speaking.iter().map(|s| s.id.clone()).collect(),
        utterances: state.utterances,
        cache_clips: u32::try_from(state.cache_clips).unwrap_or(u32::MAX),
        cache_bytes: state.cache_bytes,
        problem: state.problem.clone().unwrap_or_default(),
        last_error: state.last_error.clone().unwrap_or_default(),
    }
}

/// The servos and their board, for GetStatus.
fn servos_to_proto(state: &crate::servos::ServosState) -> pb::ServosStatus {
    pb::ServosStatus {
        port: state.port.clone(),
        r#virtual: state.is_virtual,
        connected: state.connected,
        last_error: state.last_error.clone().unwrap_or_default(),
        board_errors: state.board_errors.clone(),
        channels: state.channels.map_or(0, u32::from),
        servos: state
            .servos
            .iter()
            .map(|s| pb::ServoStatus {
                name: s.name.clone(),
                channel: u32::from(s.channel),
                min_us: u32::from(s.min_us),
                max_us: u32::from(s.max_us),
                home_us: u32::from(s.home_us),
                target_us: s.target_us,
                position: s.position,
                moving: s.moving,
                max_speed: s.max_speed,
                problem: s.problem.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// What the eyes show, for GetStatus.
fn eyes_to_proto(state: &crate::eyes::EyesState) -> EyesStatus {
    EyesStatus {
        port: state.port.clone(),
        connected: state.connected,
        r#virtual: state.is_virtual,
        pattern: state.pattern.as_str().to_string(),
        brightness: state.brightness,
        last_error: state.last_error.clone().unwrap_or_default(),
        testing: state.testing,
    }
}

/// The playback state as GetStatus names it; empty before the audio first
/// starts.
fn playback_to_proto(state: Option<crate::audio::PlaybackState>) -> &'static str {
    use crate::audio::PlaybackState;
    match state {
        Some(PlaybackState::Playing) => "playing",
        Some(PlaybackState::Paused) => "paused",
        Some(PlaybackState::Stopped) => "stopped",
        None => "",
    }
}

/// What the audio is doing, for GetStatus.
fn audio_to_proto(state: &crate::audio::AudioState) -> AudioStatus {
    let track = state.track.as_ref();
    AudioStatus {
        output: state.output.clone(),
        r#virtual: state.is_virtual,
        state: playback_to_proto(state.state).to_string(),
        track: track.map(|t| t.title.clone()).unwrap_or_default(),
        artist: track.and_then(|t| t.artist.clone()).unwrap_or_default(),
        position: track.map(|_| duration(state.position)),
        duration: track.and_then(|t| t.duration).map(duration),
        volume: u32::from(state.volume),
        ducked: state.ducked.is_some(),
        duck_level: state.ducked.map_or(0.0, f64::from),
        dj_mode: state.dj,
        connected: state.connected,
        sample_rate: state.sample_rate,
        underruns: state.underruns,
        queue: state.queue.clone(),
        library_size: state.library_size as u32,
        last_error: state.last_error.clone().unwrap_or_default(),
    }
}
