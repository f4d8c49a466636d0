//! `SystemService.PublishEvent` end to end: what a client may publish (its
//! own `ext.*` events and the conversation's `voice.*` ones), what it may
//! not (the server's own topics, bad names, bad sentiments, payloads too
//! large), events reaching WatchEvents by glob and the bus's counts, and the
//! token.

mod common;

use cantina::v1::{
    GetStatusRequest, PublishEventRequest, PublishEventResponse, WatchEventsRequest,
    system_service_client::SystemServiceClient,
};
use common::{TestServer, next_in as next, payload, system, watch};
use serde_json::json;
use tonic::{Code, Status};

async fn publish(
    server: &TestServer,
    topic: &str,
    payload: serde_json::Value,
    correlation_id: &str,
) -> Result<PublishEventResponse, Status> {
    system(server)
        .await
        .publish_event(PublishEventRequest {
            topic: topic.into(),
            payload: Some(cantina::json::struct_from_json(payload)),
            correlation_id: correlation_id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn an_ext_event_reaches_watchers_by_glob_with_its_payload_and_correlation_id() {
    let server = TestServer::start().await;
    let mut ext = watch(&server, &["ext.*"]).await;
    let mut buttons = watch(&server, &["ext.button.*"]).await;
    let mut everything = watch(&server, &[]).await;

    let door = publish(&server, "ext.sensor.door", json!({"open": true}), "")
        .await
        .unwrap();
    assert_eq!(door.topic, "ext.sensor.door");
    assert_eq!(door.correlation_id.len(), 36, "a generated uuid: {door:?}");
    let pressed = publish(
        &server,
        "ext.button.pressed",
        json!({"button": 3}),
        "show-9",
    )
    .await
    .unwrap();
    assert_eq!(
        (pressed.topic.as_str(), pressed.correlation_id.as_str()),
        ("ext.button.pressed", "show-9")
    );
    assert!(pressed.seq > door.seq);

    let first = next(&mut ext).await;
    assert_eq!(
        (
            first.topic.as_str(),
            first.correlation_id.as_str(),
            first.seq
        ),
        ("ext.sensor.door", door.correlation_id.as_str(), door.seq)
    );
    assert_eq!(payload(&first), json!({"open": true}));
    assert_eq!(first.source, "client");
    assert!(first.metadata.contains_key("peer"), "{:?}", first.metadata);
    let second = next(&mut ext).await;
    assert_eq!(
        (second.topic.as_str(), second.seq),
        ("ext.button.pressed", pressed.seq)
    );

    // `ext.button.*` sees the button and not the door.
    let button = next(&mut buttons).await;
    assert_eq!(
        (button.topic.as_str(), button.correlation_id.as_str()),
        ("ext.button.pressed", "show-9")
    );
    assert_eq!(payload(&button), json!({"button": 3}));

    // An unfiltered watcher sees them among the rest.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = next(&mut everything).await;
        if event.topic.starts_with("ext.") {
            seen.push(event.topic);
        }
    }
    assert_eq!(seen, ["ext.sensor.door", "ext.button.pressed"]);

    // The bus counts them (every external name under `ext.*`).
    let status = system(&server)
        .await
        .get_status(GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let bus = cantina::json::struct_to_json(status.bus.as_ref().unwrap());
    assert_eq!(bus["topics"]["ext.*"], 2, "{bus}");
}

#[tokio::test]
async fn the_conversation_topics_are_published_as_the_servers_own() {
    let server = TestServer::start().await;
    let mut voice = watch(&server, &["voice.*"]).await;
    for topic in [
        "voice.listening.started",
        "voice.listening.stopped",
        "voice.thinking.started",
        "voice.thinking.stopped",
    ] {
        publish(&server, topic, json!({}), "").await.unwrap();
        assert_eq!(next(&mut voice).await.topic, topic);
    }
    for sentiment in ["happy", "sad", "angry", "surprised"] {
        let done = publish(
            &server,
            "voice.sentiment",
            json!({ "sentiment": sentiment }),
            "mood",
        )
        .await
        .unwrap();
        assert_eq!(done.topic, "voice.sentiment");
        let event = next(&mut voice).await;
        assert_eq!(payload(&event)["sentiment"], sentiment);
        assert_eq!(event.correlation_id, "mood");
    }
}

/// Refused with INVALID_ARGUMENT, the message containing each of `words`.
async fn refused(server: &TestServer, topic: &str, payload: serde_json::Value, words: &[&str]) {
    let status = publish(server, topic, payload, "").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{topic}: {status:?}");
    for word in words {
        assert!(
            status.message().contains(word),
            "{topic}: '{word}' is not in: {}",
            status.message()
        );
    }
}

#[tokio::test]
async fn the_servers_own_topics_bad_names_and_bad_sentiments_are_refused() {
    let server = TestServer::start().await;
    let mut all = watch(&server, &[]).await;
    let allowed = ["'ext.'", "'voice.listening.started'", "'voice.sentiment'"];
    for forged in [
        "system.mode.changed",
        "music.playback.started",
        "eyes.pattern.changed",
        "speech.started",
        "voice.speaking",
        "",
    ] {
        refused(&server, forged, json!({}), &allowed).await;
    }
    refused(
        &server,
        "voice.sentiment",
        json!({"sentiment": "bored"}),
        &["'happy', 'sad', 'angry', 'surprised'", "got \"bored\""],
    )
    .await;
    refused(
        &server,
        "voice.sentiment",
        json!({}),
        &["no 'sentiment' field"],
    )
    .await;
    for (name, problem) in [
        ("ext.", "empty segment"),
        ("ext", "does not start with 'ext.'"),
        ("ext.button..pressed", "empty segment"),
        ("ext.button.", "empty segment"),
        ("ext.Button", "'B' is not allowed"),
        ("ext.button pressed", "' ' is not allowed"),
    ] {
        refused(
            &server,
            name,
            json!({}),
            &[problem, "e.g. 'ext.button.pressed'"],
        )
        .await;
    }
    let long = format!("ext.{}", "a".repeat(200));
    refused(&server, &long, json!({}), &["the limit is 128"]).await;
    let big = json!({ "blob": "x".repeat(20_000) });
    refused(&server, "ext.big", big, &["the limit is 16384"]).await;
    let status = publish(&server, "ext.ok", json!({}), "has space")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("correlation_id"), "{status:?}");

    // Nothing refused reached the bus: the next event is the one accepted.
    publish(&server, "ext.after.refusals", json!({}), "")
        .await
        .unwrap();
    loop {
        let event = next(&mut all).await;
        if event.topic == "ext.after.refusals" {
            break;
        }
        assert_ne!(event.source, "client", "refused, yet published: {event:?}");
    }
}

#[tokio::test]
async fn ext_globs_are_accepted_and_typos_still_refused() {
    let server = TestServer::start().await;
    for globs in [&["ext.*"][..], &["ext.button.*", "music.*"], &["*.pressed"]] {
        system(&server)
            .await
            .watch_events(WatchEventsRequest {
                topics: globs.iter().map(|g| g.to_string()).collect(),
            })
            .await
            .unwrap_or_else(|e| panic!("{globs:?}: {e:?}"));
    }
    let status = system(&server)
        .await
        .watch_events(WatchEventsRequest {
            topics: vec!["ex.*".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("did you mean 'ext.*'?"),
        "{status:?}"
    );
}

#[tokio::test]
async fn publishing_needs_the_token() {
    let mut config = common::test_config();
    config.token = Some("sesame".into());
    let server = TestServer::with_config(config).await;
    let request = || PublishEventRequest {
        topic: "ext.button.pressed".into(),
        ..Default::default()
    };
    let status = SystemServiceClient::new(server.client().await.channel)
        .publish_event(request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let done = SystemServiceClient::new(server.client_with_token("sesame").await.channel)
        .publish_event(request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.topic, "ext.button.pressed");
}
