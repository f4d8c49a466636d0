//! Every feature of the bus, each with a test that fails without it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use tokio::sync::{Notify, mpsc};

use super::*;

fn bus() -> Bus {
    Bus::new(BusConfig::default())
}

/// A handler that forwards each event to a channel.
fn forward(
    bus: &Bus,
    builder: SubscribeBuilder<'_>,
) -> (Subscription, mpsc::UnboundedReceiver<Arc<Event>>) {
    let _ = bus;
    let (tx, rx) = mpsc::unbounded_channel();
    let sub = builder.handler(move |event| {
        let tx = tx.clone();
        async move { tx.send(event).map_err(|_| "receiver gone") }
    });
    (sub, rx)
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn delivers_to_matching_topics_only() {
    let bus = bus();
    let (_s, mut rx) = forward(&bus, bus.subscribe(Topic::ModeChanged));
    bus.emit(Topic::MusicPlaybackStarted, "test", json!({}));
    bus.emit(Topic::ModeChanged, "test", json!({"to": "IDLE"}));
    let event = rx.recv().await.unwrap();
    assert_eq!(event.topic, Topic::ModeChanged);
    assert_eq!(event.payload["to"], "IDLE");
    settle().await;
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn glob_subscriptions_match_families() {
    let bus = bus();
    let (_s, mut rx) = forward(&bus, bus.subscribe_glob(&["music.*"]).unwrap());
    bus.emit(Topic::ModeChanged, "test", ());
    bus.emit(Topic::MusicPlaybackStarted, "test", ());
    bus.emit(Topic::MusicVolumeChanged, "test", ());
    assert_eq!(rx.recv().await.unwrap().topic, Topic::MusicPlaybackStarted);
    assert_eq!(rx.recv().await.unwrap().topic, Topic::MusicVolumeChanged);
    assert!(bus.subscribe_glob(&["muisc.*"]).is_err());
}

#[tokio::test]
async fn external_events_reach_subscribers_waiters_and_history_by_their_full_name() {
    let bus = bus();
    let name = |n: &str| ExtName::parse(n).unwrap();
    let (_buttons, mut buttons) = forward(&bus, bus.subscribe_glob(&["ext.button.*"]).unwrap());
    let (_all, mut all) = forward(&bus, bus.subscribe_glob::<&str>(&[]).unwrap());
    let (_music, mut music) = forward(&bus, bus.subscribe_glob(&["music.*"]).unwrap());
    let pressed = bus.wait_for(
        TopicSelector::parse(&["ext.button.pressed"]).unwrap(),
        |e| e.payload["button"] == 2,
        Duration::from_secs(5),
    );
    bus.publish(Draft::external(
        name("ext.sensor.door"),
        "test",
        json!({"open": true}),
    ));
    for button in [1, 2] {
        bus.publish(
            Draft::external(
                name("ext.button.pressed"),
                "test",
                json!({"button": button}),
            )
            .correlation_id(format!("press-{button}")),
        );
    }
    let event = pressed.await.unwrap();
    assert_eq!(
        (event.name(), event.topic),
        ("ext.button.pressed", Topic::External)
    );
    assert_eq!(event.correlation_id, "press-2");
    let first = buttons.recv().await.unwrap();
    assert_eq!(
        (first.name(), &first.payload),
        ("ext.button.pressed", &json!({"button": 1}))
    );
    assert_eq!(buttons.recv().await.unwrap().payload["button"], 2);
    assert_eq!(all.recv().await.unwrap().name(), "ext.sensor.door");
    settle().await;
    assert!(buttons.try_recv().is_err() && music.try_recv().is_err());

    let doors = bus.history(Some(TopicSelector::parse(&["ext.sensor.*"]).unwrap()), 10);
    assert_eq!(doors.len(), 1);
    assert_eq!(doors[0].payload, json!({"open": true}));
    assert_eq!(bus.history(Some(Topic::External), 10).len(), 3);
    let json = serde_json::to_value(&*doors[0]).unwrap();
    assert_eq!(json["topic"], "ext.sensor.door");
    assert_eq!(bus.metrics()["topics"]["ext.*"], 3);
}

#[tokio::test]
async fn higher_priority_is_handed_the_event_first() {
    let bus = bus();
    let order = Arc::new(Mutex::new(Vec::new()));
    for (name, priority) in [("low", 0), ("high", 10), ("middle", 5)] {
        let order = order.clone();
        let _ = bus
            .subscribe(Topic::ModeChanged)
            .priority(priority)
            .name(name)
            .handler(move |_| {
                order.lock().unwrap().push(name);
                async { Ok::<_, String>(()) }
            });
    }
    settle().await;
    bus.emit(Topic::ModeChanged, "test", ());
    settle().await;
    assert_eq!(*order.lock().unwrap(), ["high", "middle", "low"]);
}

#[tokio::test]
async fn filters_select_events_at_publish_time() {
    let bus = bus();
    let (_s, mut rx) = forward(
        &bus,
        bus.subscribe(Topic::ModeChanged)
            .filter(|e| e.payload["to"] == "INTERACTIVE"),
    );
    bus.emit(Topic::ModeChanged, "test", json!({"to": "IDLE"}));
    bus.emit(Topic::ModeChanged, "test", json!({"to": "INTERACTIVE"}));
    assert_eq!(rx.recv().await.unwrap().payload["to"], "INTERACTIVE");
    assert_eq!(
        bus.counters().delivered,
        1,
        "the filtered event was never queued"
    );
}

#[tokio::test]
async fn once_subscriptions_see_one_event_and_end() {
    let bus = bus();
    let (sub, mut rx) = forward(&bus, bus.subscribe(Topic::ModeChanged).once());
    bus.emit(Topic::ModeChanged, "test", json!(1));
    bus.emit(Topic::ModeChanged, "test", json!(2));
    assert_eq!(rx.recv().await.unwrap().payload, json!(1));
    settle().await;
    assert!(rx.try_recv().is_err());
    assert!(!sub.is_active());
    assert_eq!(bus.subscriber_count(), 0);
}

#[tokio::test]
async fn wait_for_catches_an_event_published_before_the_await() {
    let bus = bus();
    let wait = bus.wait_for(
        Topic::ModeTransitionCompleted,
        |e| e.payload["to"] == "AMBIENT",
        Duration::from_secs(1),
    );
    bus.emit(
        Topic::ModeTransitionCompleted,
        "test",
        json!({"to": "IDLE"}),
    );
    bus.emit(
        Topic::ModeTransitionCompleted,
        "test",
        json!({"to": "AMBIENT"}),
    );
    let event = wait.await.unwrap();
    assert_eq!(event.payload["to"], "AMBIENT");
    assert_eq!(bus.subscriber_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn wait_for_times_out_and_cleans_up() {
    let bus = bus();
    let wait = bus.wait_for(Topic::ModeChanged, |_| true, Duration::from_secs(30));
    assert_eq!(bus.subscriber_count(), 1);
    assert_eq!(
        wait.await.unwrap_err(),
        WaitError::Timeout(Duration::from_secs(30))
    );
    assert_eq!(bus.subscriber_count(), 0);
}

#[tokio::test]
async fn a_wait_dropped_unfinished_leaves_the_subscribers() {
    let bus = bus();
    let wait = bus.wait_for(Topic::ModeChanged, |_| true, Duration::from_secs(30));
    assert_eq!(bus.subscriber_count(), 1);
    drop(wait);
    assert_eq!(bus.subscriber_count(), 0);
}

#[tokio::test]
async fn pre_middleware_annotates_and_vetoes() {
    let bus = bus();
    bus.add_pre(|event| {
        event.metadata.insert("seen_by".into(), "auditor".into());
        true
    });
    bus.add_pre(|event| event.payload != json!("secret"));
    let (_s, mut rx) = forward(&bus, bus.subscribe(TopicSet::all()));
    assert_eq!(bus.emit(Topic::ModeChanged, "test", "secret"), None);
    bus.emit(Topic::ModeChanged, "test", "public");
    let event = rx.recv().await.unwrap();
    assert_eq!(event.payload, json!("public"));
    assert_eq!(event.metadata["seen_by"], "auditor");
    assert_eq!(bus.counters().vetoed, 1);
}

#[tokio::test]
async fn post_middleware_sees_what_became_of_each_event() {
    let bus = bus();
    let seen = Arc::new(Mutex::new(Vec::new()));
    bus.add_post({
        let seen = seen.clone();
        move |event, delivery| seen.lock().unwrap().push((event.topic, *delivery))
    });
    let _never = bus
        .subscribe(Topic::ModeChanged)
        .queue(1, Overflow::DropNewest)
        .handler(|_| std::future::pending::<Result<(), String>>());
    for _ in 0..3 {
        bus.emit(Topic::ModeChanged, "test", ());
        settle().await;
    }
    bus.emit(Topic::SystemStarted, "test", ());
    let seen = seen.lock().unwrap();
    let deliveries: Vec<_> = seen
        .iter()
        .map(|(_, d)| (d.matched, d.queued, d.dropped, d.evicted))
        .collect();
    // The first is taken by the (stuck) handler, the second waits, the third
    // finds the inbox full and is refused (DropNewest); nobody wants the fourth.
    assert_eq!(
        deliveries,
        [(1, 1, 0, 0), (1, 1, 0, 0), (1, 0, 1, 0), (0, 0, 0, 0)]
    );
}

#[tokio::test]
async fn history_keeps_the_most_recent_events() {
    let bus = Bus::new(BusConfig {
        history: 3,
        ..BusConfig::default()
    });
    for i in 0..5 {
        bus.emit(
            if i % 2 == 0 {
                Topic::ModeChanged
            } else {
                Topic::SystemStarted
            },
            "test",
            json!(i),
        );
    }
    let all: Vec<_> = bus
        .history(None::<Topic>, 10)
        .iter()
        .map(|e| e.payload.clone())
        .collect();
    assert_eq!(all, [json!(2), json!(3), json!(4)]);
    let modes: Vec<_> = bus
        .history(Some(Topic::ModeChanged), 10)
        .iter()
        .map(|e| e.payload.clone())
        .collect();
    assert_eq!(modes, [json!(2), json!(4)]);
    assert_eq!(bus.history(None::<Topic>, 1)[0].payload, json!(4));
}

#[tokio::test]
async fn correlation_ids_come_from_the_draft_the_task_or_the_bus() {
    let bus = bus();
    let given = bus
        .publish(
            Draft::new(Topic::ModeChanged, "test", ())
                .correlation_id("req-1")
                .meta("user", "alice"),
        )
        .unwrap();
    let scoped = with_correlation("cmd-7".into(), async {
        bus.emit(Topic::ModeChanged, "test", ()).unwrap()
    })
    .await;
    let own = bus.emit(Topic::ModeChanged, "test", ()).unwrap();
    let history = bus.history(None::<Topic>, 3);
    assert_eq!(history[0].seq, given);
    assert_eq!(history[0].correlation_id, "req-1");
    assert_eq!(history[0].metadata["user"], "alice");
    assert_eq!(history[1].seq, scoped);
    assert_eq!(history[1].correlation_id, "cmd-7");
    assert_eq!(history[2].seq, own);
    assert!(
        history[2]
            .correlation_id
            .to_string()
            .ends_with(&format!("-{own}")),
        "{}",
        history[2].correlation_id
    );
    assert!(given < scoped && scoped < own, "sequence numbers increase");
}

#[tokio::test]
async fn failing_handlers_fill_the_dead_letter_queue() {
    let bus = bus();
    let _s = bus
        .subscribe(Topic::ModeChanged)
        .name("grumpy")
        .handler(|_| async { Err::<(), _>("no thanks") });
    let failed = bus.wait_for(Topic::BusHandlerFailed, |_| true, Duration::from_secs(5));
    bus.emit(Topic::ModeChanged, "test", ());
    let report = failed.await.unwrap();
    assert_eq!(report.payload["subscriber"], "grumpy");
    let dead = bus.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].subscriber.as_str(), dead[0].error.as_str()),
        ("grumpy", "no thanks")
    );
    assert_eq!(dead[0].event.topic, Topic::ModeChanged);
}

#[tokio::test]
async fn a_panicking_handler_is_a_failure_not_a_crash() {
    let bus = bus();
    let (_ok, mut rx) = forward(&bus, bus.subscribe(Topic::ModeChanged));
    let _s = bus
        .subscribe(Topic::ModeChanged)
        .name("boom")
        .handler(|_| async {
            if true {
                panic!("kaboom");
            }
            Ok::<(), String>(())
        });
    let failed = bus.wait_for(Topic::BusHandlerFailed, |_| true, Duration::from_secs(5));
    bus.emit(Topic::ModeChanged, "test", ());
    assert!(
        failed.await.unwrap().payload["error"]
            .as_str()
            .unwrap()
            .contains("kaboom")
    );
    rx.recv().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn each_handler_has_its_own_timeout() {
    let bus = bus();
    let _slow = bus
        .subscribe(Topic::ModeChanged)
        .name("slow")
        .timeout(Duration::from_millis(200))
        .handler(|_| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), String>(())
        });
    let _patient = bus
        .subscribe(Topic::ModeChanged)
        .name("patient")
        .timeout(Duration::from_secs(2))
        .handler(|_| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), String>(())
        });
    let failed = bus.wait_for(Topic::BusHandlerFailed, |_| true, Duration::from_secs(10));
    bus.emit(Topic::ModeChanged, "test", ());
    let report = failed.await.unwrap();
    assert_eq!(report.payload["subscriber"], "slow");
    assert!(
        report.payload["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 200ms")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dead = bus.dead_letters();
    assert_eq!(
        dead.len(),
        1,
        "the patient handler finished in time: {dead:?}"
    );
    assert_eq!(bus.metrics()["handlers"][0]["timeouts"], 1);
}

#[tokio::test]
async fn failing_too_often_in_a_row_unsubscribes() {
    let bus = Bus::new(BusConfig {
        max_failures: 3,
        ..BusConfig::default()
    });
    let script = Arc::new(Mutex::new(
        vec![false, false, true, false, false, false].into_iter(),
    ));
    let sub = bus.subscribe(Topic::ModeChanged).name("flaky").handler({
        let script = script.clone();
        move |_| {
            let ok = script.lock().unwrap().next().unwrap_or(true);
            async move { if ok { Ok(()) } else { Err("flaked") } }
        }
    });
    let gone = bus.wait_for(
        Topic::BusHandlerUnsubscribed,
        |_| true,
        Duration::from_secs(5),
    );
    for _ in 0..6 {
        bus.emit(Topic::ModeChanged, "test", ());
    }
    let event = gone.await.unwrap();
    assert_eq!(event.payload["subscriber"], "flaky");
    assert_eq!(event.payload["failures"], 3);
    assert!(!sub.is_active());
    // Two failures, a success (which resets the count), then three: five in all.
    assert_eq!(bus.counters().failures, 5);
}

#[tokio::test]
async fn a_stuck_subscriber_slows_neither_publisher_nor_others() {
    let bus = bus();
    let _stuck = bus
        .subscribe(Topic::MusicPlaybackProgress)
        .name("stuck")
        .queue(4, Overflow::DropOldest)
        .timeout(Duration::from_secs(3600))
        .handler(|_| std::future::pending::<Result<(), String>>());
    let (_healthy, mut rx) = forward(
        &bus,
        bus.subscribe(Topic::MusicPlaybackProgress).name("healthy"),
    );
    for i in 0..1000 {
        bus.emit(Topic::MusicPlaybackProgress, "test", json!(i));
    }
    for i in 0..1000 {
        assert_eq!(rx.recv().await.unwrap().payload, json!(i));
    }
    let metrics = bus.metrics();
    let stuck = metrics["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "stuck")
        .unwrap()
        .clone();
    // Its inbox kept the newest four (one now in the handler's hands); every
    // other event is counted as lost, none silently.
    assert_eq!(stuck["queue_depth"], 3);
    assert_eq!(stuck["calls"], 0, "the one in hand never finishes");
    assert_eq!(stuck["dropped"], 996);
    assert_eq!(bus.counters().dropped, 996);
    assert_eq!(
        metrics["handlers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "healthy")
            .unwrap()["dropped"],
        0
    );
}

#[tokio::test]
async fn a_contended_queue_delivers_the_most_urgent_class_first() {
    let bus = bus();
    let gate = Arc::new(Notify::new());
    let order = Arc::new(Mutex::new(Vec::new()));
    let _s = bus.subscribe(TopicSet::all()).handler({
        let (gate, order) = (gate.clone(), order.clone());
        move |event| {
            let (gate, order) = (gate.clone(), order.clone());
            async move {
                if event.topic == Topic::SystemStarted {
                    gate.notified().await;
                }
                order.lock().unwrap().push(event.topic);
                Ok::<(), String>(())
            }
        }
    });
    bus.emit(Topic::SystemStarted, "test", ());
    settle().await; // the handler now holds SystemStarted, waiting on the gate
    bus.emit(Topic::MusicPlaybackProgress, "test", ());
    bus.emit(Topic::MusicVolumeChanged, "test", ());
    bus.emit(Topic::ServiceStatusChanged, "test", ());
    gate.notify_one();
    settle().await;
    assert_eq!(
        *order.lock().unwrap(),
        [
            Topic::SystemStarted,
            Topic::ServiceStatusChanged,
            Topic::MusicVolumeChanged,
            Topic::MusicPlaybackProgress
        ]
    );
}

#[tokio::test]
async fn metrics_count_topics_handlers_errors_and_depth() {
    let bus = bus();
    let (_s, mut rx) = forward(&bus, bus.subscribe(Topic::ModeChanged).name("counter"));
    bus.emit(Topic::ModeChanged, "test", ());
    bus.emit(Topic::ModeChanged, "test", ());
    bus.emit(Topic::SystemStarted, "test", ());
    rx.recv().await.unwrap();
    rx.recv().await.unwrap();
    settle().await;
    let m = bus.metrics();
    assert_eq!(m["published"], 3);
    assert_eq!(m["delivered"], 2);
    assert_eq!(m["topics"]["system.mode.changed"], 2);
    assert_eq!(m["topics"]["system.started"], 1);
    let handler = &m["handlers"][0];
    assert_eq!(handler["name"], "counter");
    assert_eq!(handler["calls"], 2);
    assert_eq!(handler["errors"], 0);
    assert_eq!(handler["queue_depth"], 0);
    assert_eq!(handler["topics"], json!(["system.mode.changed"]));
}

#[tokio::test]
async fn streams_report_what_they_missed() {
    let bus = bus();
    let mut stream = bus
        .subscribe(TopicSet::all())
        .queue(2, Overflow::DropOldest)
        .stream();
    for i in 0..5 {
        bus.emit(Topic::ModeChanged, "test", json!(i));
    }
    assert!(matches!(stream.next().await, Some(Item::Missed(3))));
    assert!(matches!(stream.next().await, Some(Item::Event(e)) if e.payload == json!(3)));
    assert!(matches!(stream.next().await, Some(Item::Event(e)) if e.payload == json!(4)));
    drop(stream);
    assert_eq!(
        bus.subscriber_count(),
        0,
        "dropping the stream unsubscribes"
    );
}

#[tokio::test]
async fn closing_ends_streams_and_refuses_events() {
    let bus = bus();
    let mut stream = bus.subscribe(TopicSet::all()).stream();
    let wait = bus.wait_for(Topic::ModeChanged, |_| true, Duration::from_secs(5));
    bus.close();
    assert!(stream.next().await.is_none());
    assert_eq!(wait.await.unwrap_err(), WaitError::Closed);
    assert_eq!(bus.emit(Topic::ModeChanged, "test", ()), None);
}

#[tokio::test]
async fn a_once_handler_that_fails_still_ends() {
    let bus = bus();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sub = bus.subscribe(Topic::ModeChanged).once().handler({
        let calls = calls.clone();
        move |_| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Err::<(), _>("nope") }
        }
    });
    bus.emit(Topic::ModeChanged, "test", ());
    bus.emit(Topic::ModeChanged, "test", ());
    settle().await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(!sub.is_active());
    assert_eq!(bus.dead_letters().len(), 1);
}
