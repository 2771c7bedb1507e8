//! The JSON frames of `/ws`: parsing what clients send (with the contract's error codes) and
//! building what the server sends.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::backend::StoredFrame;

/// Longest `text` accepted, in Unicode code points.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest `client_id` accepted, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 128;

// ANCHOR: client_frame
/// A frame from a client, already checked for shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    Join {
        room: String,
        since: Option<u64>,
        /// The epoch of the room's history the client last saw (contract 1.1).
        epoch: Option<String>,
    },
    Leave {
        room: String,
    },
    Send {
        room: String,
        text: String,
        client_id: Option<String>,
    },
    Typing {
        room: String,
    },
    Ping,
}
// ANCHOR_END: client_frame

/// The `code` of an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidFrame,
    UnknownType,
    NotMember,
    NotFound,
    EmptyText,
    TooLong,
    RateLimited,
    /// The backend failed; the client may retry.
    Unavailable,
}

/// An `error` frame: the connection stays open after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: String,
}

/// What an `error` frame repeats of the frame that caused it: its `room` and `client_id`, when
/// they were strings there (contract 1.1), so that a client knows which send failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorContext {
    pub room: Option<String>,
    pub client_id: Option<String>,
}

impl FrameError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidFrame, message)
    }

    /// The JSON of the `error` frame, repeating what `context` kept of the frame.
    pub fn to_frame(&self, context: &ErrorContext) -> String {
        to_json(&ServerFrame::Error {
            code: self.code,
            message: &self.message,
            room: context.room.as_deref(),
            client_id: context.client_id.as_deref(),
        })
    }
}

/// Parses a text frame. The order of the checks decides the error code: JSON, object, `type`,
/// known type, then the fields of that type.
pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
    parse_with_context(text).0
}

// ANCHOR: parse
/// [`parse`], plus what an error frame about this frame must repeat (even when the frame is
/// refused: a `send` with a bad `text` still names its room and `client_id`).
///
/// One pass over the text: the fields this server reads are kept as they came (a string, an
/// unsigned integer, `null` or anything else), every other value is skipped without being
/// built, and the checks run on what was kept. No `serde_json::Value` tree in between.
pub fn parse_with_context(text: &str) -> (Result<ClientFrame, FrameError>, ErrorContext) {
    let Ok(top) = serde_json::from_str::<Top<'_>>(text) else {
        let error = FrameError::invalid("el frame no es JSON válido");
        return (Err(error), ErrorContext::default());
    };
    let Top::Object(fields) = top else {
        let error = FrameError::invalid("el frame debe ser un objeto JSON");
        return (Err(error), ErrorContext::default());
    };
    let context = ErrorContext {
        room: fields.room.as_ref().and_then(Loose::string),
        client_id: fields.client_id.as_ref().and_then(Loose::string),
    };
    (check_shape(fields), context)
}

fn check_shape(fields: Fields<'_>) -> Result<ClientFrame, FrameError> {
    let Some(Loose::Str(kind)) = &fields.kind else {
        return Err(FrameError::invalid(
            "falta el campo «type» o no es un texto",
        ));
    };
    let frame = match kind.as_ref() {
        "join" => {
            // `null` is not a string either (it would read as an absent epoch).
            let epoch = match fields.epoch {
                None => None,
                Some(Loose::Str(epoch)) => Some(epoch.into_owned()),
                Some(_) => return Err(FrameError::invalid("epoch debe ser un texto")),
            };
            ClientFrame::Join {
                room: required_text("room", fields.room)?,
                since: match fields.since {
                    None | Some(Loose::Null) => None,
                    Some(Loose::Unsigned(since)) => Some(since),
                    Some(_) => return Err(invalid_field("since", "un entero no negativo")),
                },
                epoch,
            }
        }
        "leave" => ClientFrame::Leave {
            room: required_text("room", fields.room)?,
        },
        "send" => {
            let room = required_text("room", fields.room)?;
            let text = required_text("text", fields.text)?;
            let client_id = match fields.client_id {
                None | Some(Loose::Null) => None,
                Some(Loose::Str(id)) => Some(id.into_owned()),
                Some(_) => return Err(invalid_field("client_id", "un texto")),
            };
            if let Some(id) = &client_id {
                if !(1..=MAX_CLIENT_ID_CHARS).contains(&id.chars().count()) {
                    return Err(FrameError::invalid(
                        "client_id debe tener de 1 a 128 caracteres",
                    ));
                }
            }
            ClientFrame::Send {
                room,
                text,
                client_id,
            }
        }
        "typing" => ClientFrame::Typing {
            room: required_text("room", fields.room)?,
        },
        "ping" => ClientFrame::Ping,
        other => {
            return Err(FrameError::new(
                ErrorCode::UnknownType,
                format!("tipo de frame desconocido: «{other}»"),
            ));
        }
    };
    Ok(frame)
}

/// A field that must be present and a string.
fn required_text(name: &str, value: Option<Loose<'_>>) -> Result<String, FrameError> {
    match value {
        Some(Loose::Str(value)) => Ok(value.into_owned()),
        None => Err(FrameError::invalid(format!(
            "campos no válidos: falta el campo «{name}»"
        ))),
        Some(_) => Err(invalid_field(name, "un texto")),
    }
}

fn invalid_field(name: &str, expected: &str) -> FrameError {
    FrameError::invalid(format!("campos no válidos: «{name}» debe ser {expected}"))
}
// ANCHOR_END: parse

/// A whole frame: an object with the fields below, or anything else (refused as not an object).
enum Top<'a> {
    Object(Fields<'a>),
    NotObject,
}

/// The fields of a client frame this server reads; any other field is skipped. A repeated field
/// keeps its last value, as a JSON object read into a map would.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<Loose<'a>>,
    room: Option<Loose<'a>>,
    text: Option<Loose<'a>>,
    client_id: Option<Loose<'a>>,
    since: Option<Loose<'a>>,
    epoch: Option<Loose<'a>>,
}

/// A field's value as it came, without deciding yet whether its type is the right one: the
/// frame's `type` decides which fields count, and a wrong type is an `invalid_frame`, not a
/// JSON error. Strings borrow from the frame unless they had escapes.
enum Loose<'a> {
    Str(Cow<'a, str>),
    /// A non-negative integer that fits in a `u64`.
    Unsigned(u64),
    Null,
    /// A boolean, a negative or fractional number, an array or an object.
    Other,
}

impl Loose<'_> {
    fn string(&self) -> Option<String> {
        match self {
            Loose::Str(value) => Some(value.clone().into_owned()),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopVisitor;
        impl<'de> Visitor<'de> for TopVisitor {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("un frame JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::Type => &mut fields.kind,
                        Key::Room => &mut fields.room,
                        Key::Text => &mut fields.text,
                        Key::ClientId => &mut fields.client_id,
                        Key::Since => &mut fields.since,
                        Key::Epoch => &mut fields.epoch,
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(Top::Object(fields))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top<'de>, A::Error> {
                IgnoredAny.visit_seq(seq).map(|_| Top::NotObject)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
            fn visit_str<E>(self, _: &str) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
            fn visit_unit<E>(self) -> Result<Top<'de>, E> {
                Ok(Top::NotObject)
            }
        }
        deserializer.deserialize_any(TopVisitor)
    }
}

/// The name of a field of [`Fields`], or any other name.
enum Key {
    Type,
    Room,
    Text,
    ClientId,
    Since,
    Epoch,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("el nombre de un campo")
            }
            fn visit_str<E>(self, name: &str) -> Result<Key, E> {
                Ok(match name {
                    "type" => Key::Type,
                    "room" => Key::Room,
                    "text" => Key::Text,
                    "client_id" => Key::ClientId,
                    "since" => Key::Since,
                    "epoch" => Key::Epoch,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LooseVisitor;
        impl<'de> Visitor<'de> for LooseVisitor {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("un valor JSON")
            }
            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Borrowed(value)))
            }
            fn visit_str<E>(self, value: &str) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Owned(value.to_owned())))
            }
            fn visit_string<E>(self, value: String) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Owned(value)))
            }
            fn visit_u64<E>(self, value: u64) -> Result<Loose<'de>, E> {
                Ok(Loose::Unsigned(value))
            }
            fn visit_i64<E>(self, value: i64) -> Result<Loose<'de>, E> {
                Ok(u64::try_from(value).map_or(Loose::Other, Loose::Unsigned))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_unit<E>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Loose<'de>, A::Error> {
                IgnoredAny.visit_seq(seq).map(|_| Loose::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Loose<'de>, A::Error> {
                IgnoredAny.visit_map(map).map(|_| Loose::Other)
            }
        }
        deserializer.deserialize_any(LooseVisitor)
    }
}

/// Checks a message text: something visible (see [`crate::domain::has_visible_text`]), at most
/// [`MAX_TEXT_CHARS`] code points.
pub fn check_text(text: &str) -> Result<(), FrameError> {
    if !crate::domain::has_visible_text(text) {
        return Err(FrameError::new(
            ErrorCode::EmptyText,
            "el mensaje está vacío",
        ));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(FrameError::new(
            ErrorCode::TooLong,
            "el mensaje supera los 4000 caracteres",
        ));
    }
    Ok(())
}

/// Frames the server sends that serde can build (the `message` frame comes from the store and
/// `joined` is spliced together in [`joined`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    Left {
        room: &'a str,
    },
    Typing {
        room: &'a str,
        user: &'a str,
    },
    Presence {
        room: &'a str,
        user: &'a str,
        status: PresenceStatus,
    },
    Pong,
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Offline,
}

/// Serializes a server frame. Serializing these plain structs cannot fail; the fallback keeps
/// the server panic-free anyway.
pub fn to_json(frame: &ServerFrame<'_>) -> String {
    serde_json::to_string(frame).unwrap_or_else(|_| {
        r#"{"type":"error","code":"unavailable","message":"error interno"}"#.into()
    })
}

/// Everything a `joined` answer says.
#[derive(Debug, Clone, Copy)]
pub struct Joined<'a> {
    pub room: &'a str,
    pub online: &'a [String],
    pub history: &'a [StoredFrame],
    /// The name of the room's history; see [`crate::backend::MessageLog::epoch`].
    pub epoch: &'a str,
    /// The client's epoch differed: its `since` was ignored (sent only when `true`).
    pub reset: bool,
    /// A `since` found more than fit (sent only when `true`).
    pub truncated: bool,
    /// Whether older messages exist before `history`; `None` when the join had a `since`.
    pub has_more: Option<bool>,
}

/// The `joined` answer. History frames are stored JSON and are spliced in as they are.
pub fn joined(answer: &Joined<'_>) -> String {
    #[derive(Serialize)]
    struct Head<'a> {
        room: &'a str,
        online: &'a [String],
        epoch: &'a str,
    }
    #[derive(Serialize)]
    struct Tail {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        has_more: Option<bool>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        reset: bool,
    }
    let head = Head {
        room: answer.room,
        online: answer.online,
        epoch: answer.epoch,
    };
    let tail = Tail {
        truncated: answer.truncated,
        has_more: answer.has_more,
        reset: answer.reset,
    };
    let head = serde_json::to_string(&head).unwrap_or_else(|_| "{}".into());
    let tail = serde_json::to_string(&tail).unwrap_or_else(|_| "{}".into());
    let frames: Vec<&str> = answer
        .history
        .iter()
        .map(|frame| frame.json.as_str())
        .collect();
    let tail = &tail[1..tail.len() - 1];
    let comma = if tail.is_empty() { "" } else { "," };
    format!(
        r#"{{"type":"joined",{},"history":[{}]{comma}{tail}}}"#,
        &head[1..head.len() - 1],
        frames.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn code_of(text: &str) -> ErrorCode {
        parse(text).unwrap_err().code
    }

    #[test]
    fn valid_frames_parse() {
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping));
        assert_eq!(
            parse(r#"{"type":"join","room":"general","since":3}"#),
            Ok(ClientFrame::Join {
                room: "general".into(),
                since: Some(3),
                epoch: None,
            })
        );
        assert_eq!(
            parse(r#"{"type":"send","room":"general","text":"hola","extra":1}"#),
            Ok(ClientFrame::Send {
                room: "general".into(),
                text: "hola".into(),
                client_id: None
            })
        );
    }

    #[test]
    fn each_kind_of_bad_frame_has_its_code() {
        assert_eq!(code_of("no es json"), ErrorCode::InvalidFrame);
        assert_eq!(code_of("[1,2]"), ErrorCode::InvalidFrame);
        assert_eq!(code_of(r#"{"room":"general"}"#), ErrorCode::InvalidFrame);
        assert_eq!(code_of(r#"{"type":7}"#), ErrorCode::InvalidFrame);
        assert_eq!(code_of(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code_of(r#"{"type":"join"}"#), ErrorCode::InvalidFrame);
        assert_eq!(
            code_of(r#"{"type":"join","room":5}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            code_of(r#"{"type":"join","room":"general","since":-1}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            code_of(r#"{"type":"send","room":"general","text":"a","client_id":""}"#),
            ErrorCode::InvalidFrame
        );
        let long_id = "x".repeat(129);
        let frame =
            format!(r#"{{"type":"send","room":"general","text":"a","client_id":"{long_id}"}}"#);
        assert_eq!(code_of(&frame), ErrorCode::InvalidFrame);
    }

    #[test]
    fn error_frames_repeat_room_and_client_id_only_when_they_are_strings() {
        let (frame, context) =
            parse_with_context(r#"{"type":"send","room":"general","text":3,"client_id":"c1"}"#);
        let error: Value = serde_json::from_str(&frame.unwrap_err().to_frame(&context)).unwrap();
        assert_eq!(error["code"], "invalid_frame");
        assert_eq!(
            (&error["room"], &error["client_id"]),
            (&Value::from("general"), &Value::from("c1"))
        );
        let (frame, context) = parse_with_context(r#"{"type":"send","room":1,"client_id":null}"#);
        let error: Value = serde_json::from_str(&frame.unwrap_err().to_frame(&context)).unwrap();
        assert!(
            error.get("room").is_none() && error.get("client_id").is_none(),
            "{error}"
        );
    }

    #[test]
    fn fields_are_checked_by_the_type_that_reads_them() {
        // Fields a type does not read are ignored, whatever their type.
        assert_eq!(
            parse(r#"{"room":5,"type":"ping","text":[1,{"a":null}],"epoch":null}"#),
            Ok(ClientFrame::Ping)
        );
        // A repeated field keeps its last value; escaped strings are decoded.
        assert_eq!(
            parse(r#"{"type":"dance","type":"leave","room":"x","room":"gen\u00e9ral"}"#),
            Ok(ClientFrame::Leave {
                room: "genéral".into()
            })
        );
        // `null` means absent for `since` and `client_id`, never for `epoch`.
        assert_eq!(
            parse(r#"{"type":"join","room":"general","since":null,"epoch":"e1"}"#),
            Ok(ClientFrame::Join {
                room: "general".into(),
                since: None,
                epoch: Some("e1".into()),
            })
        );
        assert_eq!(
            code_of(r#"{"type":"join","room":"general","epoch":null}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            parse(r#"{"type":"send","room":"general","text":"a","client_id":null}"#),
            Ok(ClientFrame::Send {
                room: "general".into(),
                text: "a".into(),
                client_id: None,
            })
        );
        for bad in [
            r#"{"type":"join","room":"general","since":1.5}"#,
            r#"{"type":"join","room":"general","since":"3"}"#,
            r#"{"type":"join","room":"general","since":18446744073709551616}"#,
            r#"{"type":"send","room":"general"}"#,
            r#"{"type":"send","room":"general","text":null}"#,
            r#"{"type":"send","room":"general","text":"a","client_id":7}"#,
            r#"{"type":"typing","room":null}"#,
            r#"{"type":"leave"}"#,
            r#"{"type":"ping"} trailing"#,
            r#"{"type":"ping""#,
            "",
            "\"ping\"",
        ] {
            assert_eq!(code_of(bad), ErrorCode::InvalidFrame, "{bad}");
        }
        // The type is checked before its fields.
        assert_eq!(
            code_of(r#"{"type":"dance","room":5}"#),
            ErrorCode::UnknownType
        );
        assert_eq!(
            parse(r#"{"type":"join","room":"general","since":18446744073709551615}"#),
            Ok(ClientFrame::Join {
                room: "general".into(),
                since: Some(u64::MAX),
                epoch: None,
            })
        );
    }

    #[test]
    fn the_context_is_kept_whatever_the_type() {
        let (frame, context) =
            parse_with_context(r#"{"type":"dance","room":"general","client_id":"c\"1"}"#);
        assert_eq!(frame.unwrap_err().code, ErrorCode::UnknownType);
        assert_eq!(
            context,
            ErrorContext {
                room: Some("general".into()),
                client_id: Some("c\"1".into()),
            }
        );
        let (_, context) = parse_with_context(r#"[{"room":"general"}]"#);
        assert_eq!(context, ErrorContext::default());
    }

    #[test]
    fn text_limits_count_code_points() {
        assert_eq!(
            check_text("  \n\t ").unwrap_err().code,
            ErrorCode::EmptyText
        );
        assert!(check_text(&"ñ".repeat(MAX_TEXT_CHARS)).is_ok());
        assert_eq!(
            check_text(&"ñ".repeat(MAX_TEXT_CHARS + 1))
                .unwrap_err()
                .code,
            ErrorCode::TooLong
        );
    }

    #[test]
    fn joined_splices_history_frames() {
        let history = [StoredFrame {
            id: 1,
            json: r#"{"type":"message","id":1}"#.into(),
        }];
        let online = ["ana".to_owned()];
        let answer = Joined {
            room: "general",
            online: &online,
            history: &history,
            epoch: "e1",
            reset: false,
            truncated: true,
            has_more: None,
        };
        let value: Value = serde_json::from_str(&joined(&answer)).unwrap();
        assert_eq!(value["type"], "joined");
        assert_eq!(value["online"][0], "ana");
        assert_eq!(value["epoch"], "e1");
        assert_eq!(value["history"][0]["id"], 1);
        assert_eq!(value["truncated"], true);
        assert!(value.get("has_more").is_none() && value.get("reset").is_none());
        let reset = Joined {
            history: &[],
            reset: true,
            truncated: false,
            has_more: Some(false),
            ..answer
        };
        let value: Value = serde_json::from_str(&joined(&reset)).unwrap();
        assert!(value.get("truncated").is_none());
        assert_eq!(
            (&value["reset"], &value["has_more"]),
            (&Value::Bool(true), &Value::Bool(false))
        );
    }
}
