//! What a client may put on the bus (PublishEvent), as a pure function:
//! events of its own under `ext.` (buttons, sensors, scripts), and the
//! conversation events of a voice client (`voice.listening.*`,
//! `voice.thinking.*`, `voice.sentiment`). Nothing else: no client forges an
//! event of the server's own (`system.mode.changed`, `music.*` …).

use std::{fmt, str::FromStr};

use serde_json::Value;

use super::{Draft, ExtName, NameError, Topic};

/// The `source` of every event a client publishes.
pub const SOURCE: &str = "client";

/// The largest payload a client may publish, in bytes of JSON.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// The declared topics a client may publish.
pub const PUBLISHABLE: [Topic; 5] = [
    Topic::VoiceListeningStarted,
    Topic::VoiceListeningStopped,
    Topic::VoiceThinkingStarted,
    Topic::VoiceThinkingStopped,
    Topic::VoiceSentiment,
];

/// A mood a voice client reports (`voice.sentiment`, payload `sentiment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sentiment {
    /// Pleased.
    Happy,
    /// Downcast.
    Sad,
    /// Cross.
    Angry,
    /// Taken aback.
    Surprised,
}

impl Sentiment {
    /// Every sentiment.
    pub const ALL: [Sentiment; 4] = [
        Sentiment::Happy,
        Sentiment::Sad,
        Sentiment::Angry,
        Sentiment::Surprised,
    ];

    /// The name in payloads (`happy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Happy => "happy",
            Sentiment::Sad => "sad",
            Sentiment::Angry => "angry",
            Sentiment::Surprised => "surprised",
        }
    }

    /// The sentiment of a `voice.sentiment` payload, if it names one.
    pub fn of_payload(payload: &Value) -> Option<Sentiment> {
        payload.get("sentiment")?.as_str()?.parse().ok()
    }
}

impl FromStr for Sentiment {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Sentiment::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or(())
    }
}

impl fmt::Display for Sentiment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Not a topic clients may publish.
    #[error(
        "topic '{0}' cannot be published by a client: publish your own events under 'ext.' (e.g. 'ext.button.pressed') or one of {list}; the server's own events are published by the server only",
        list = publishable_list()
    )]
    NotPublishable(String),
    /// An `ext.` name that is not valid.
    #[error(transparent)]
    Name(NameError),
    /// The payload is too large.
    #[error("the payload is {0} bytes of JSON; the limit is {MAX_PAYLOAD}")]
    TooLarge(usize),
    /// `voice.sentiment` without a known sentiment.
    #[error(
        "voice.sentiment needs a payload field 'sentiment' that is one of {list}; got {0}",
        list = Sentiment::ALL.map(|s| format!("'{s}'")).join(", ")
    )]
    Sentiment(String),
}

fn publishable_list() -> String {
    PUBLISHABLE.map(|t| format!("'{t}'")).join(", ")
}

/// The event a client asks to publish on `topic` with `payload` (a JSON
/// object, or null for none), ready for the bus; or why it may not be.
pub fn draft(topic: &str, payload: Value) -> Result<Draft, PublishError> {
    let topic = topic.trim();
    let payload = match payload {
        Value::Null => Value::Object(Default::default()),
        other => other,
    };
    let size = serde_json::to_vec(&payload).map_or(usize::MAX, |json| json.len());
    if topic.starts_with("ext.") || topic == "ext" {
        let name = ExtName::parse(topic).map_err(PublishError::Name)?;
        check_size(size)?;
        return Ok(Draft::external(name, SOURCE, payload));
    }
    let Some(declared) = PUBLISHABLE.into_iter().find(|t| t.as_str() == topic) else {
        return Err(PublishError::NotPublishable(topic.to_string()));
    };
    check_size(size)?;
    if declared == Topic::VoiceSentiment && Sentiment::of_payload(&payload).is_none() {
        let got = match payload.get("sentiment") {
            None => "no 'sentiment' field".to_string(),
            Some(value) => format!("{value}"),
        };
        return Err(PublishError::Sentiment(got));
    }
    Ok(Draft::new(declared, SOURCE, payload))
}

fn check_size(size: usize) -> Result<(), PublishError> {
    if size > MAX_PAYLOAD {
        Err(PublishError::TooLarge(size))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn clients_publish_ext_topics_and_the_voice_topics_only() {
        let d = draft("ext.button.pressed", json!({"button": 3})).unwrap();
        assert_eq!((d.topic, d.name()), (Topic::External, "ext.button.pressed"));
        assert_eq!(d.payload, json!({"button": 3}));
        for topic in PUBLISHABLE {
            let d = draft(topic.as_str(), json!({"sentiment": "sad"})).unwrap();
            assert_eq!(d.topic, topic);
        }
        assert_eq!(
            draft("voice.listening.started", Value::Null)
                .unwrap()
                .payload,
            json!({})
        );
        for forged in [
            "system.mode.changed",
            "music.playback.started",
            "speech.started",
            "voice.other",
            "",
        ] {
            let err = draft(forged, json!({})).unwrap_err();
            assert_eq!(err, PublishError::NotPublishable(forged.into()));
            let text = err.to_string();
            assert!(
                text.contains("'ext.'") && text.contains("'voice.sentiment'"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_sentiment_must_be_one_the_eyes_can_show() {
        for s in Sentiment::ALL {
            assert!(draft("voice.sentiment", json!({"sentiment": s.as_str()})).is_ok());
        }
        let err = draft("voice.sentiment", json!({"sentiment": "bored"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "voice.sentiment needs a payload field 'sentiment' that is one of 'happy', 'sad', 'angry', 'surprised'; got \"bored\""
        );
        let err = draft("voice.sentiment", json!({})).unwrap_err();
        assert!(
            err.to_string().ends_with("got no 'sentiment' field"),
            "{err}"
        );
    }

    #[test]
    fn bad_ext_names_and_large_payloads_are_refused() {
        assert!(matches!(
            draft("ext.", json!({})),
            Err(PublishError::Name(_))
        ));
        assert!(matches!(
            draft("ext", json!({})),
            Err(PublishError::Name(_))
        ));
        assert!(matches!(
            draft("ext.Button", json!({})),
            Err(PublishError::Name(_))
        ));
        let big = json!({ "blob": "x".repeat(MAX_PAYLOAD) });
        assert!(matches!(
            draft("ext.big", big),
            Err(PublishError::TooLarge(n)) if n > MAX_PAYLOAD
        ));
    }
}
