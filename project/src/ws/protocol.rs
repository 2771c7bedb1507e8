//! The JSON frames of `/ws`: parsing what clients send (with the contract's error codes) and
//! building what the server sends.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

const KNOWN_TYPES: [&str; 5] = ["join", "leave", "send", "typing", "ping"];

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

impl ErrorContext {
    fn of(object: &serde_json::Map<String, Value>) -> Self {
        let string = |field: &str| match object.get(field) {
            Some(Value::String(value)) => Some(value.clone()),
            _ => None,
        };
        Self {
            room: string("room"),
            client_id: string("client_id"),
        }
    }
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

/// [`parse`], plus what an error frame about this frame must repeat (even when the frame is
/// refused: a `send` with a bad `text` still names its room and `client_id`).
pub fn parse_with_context(text: &str) -> (Result<ClientFrame, FrameError>, ErrorContext) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        let error = FrameError::invalid("el frame no es JSON válido");
        return (Err(error), ErrorContext::default());
    };
    let context = match &value {
        Value::Object(object) => ErrorContext::of(object),
        _ => ErrorContext::default(),
    };
    (check_shape(value), context)
}

fn check_shape(value: Value) -> Result<ClientFrame, FrameError> {
    let Value::Object(object) = &value else {
        return Err(FrameError::invalid("el frame debe ser un objeto JSON"));
    };
    let Some(Value::String(kind)) = object.get("type") else {
        return Err(FrameError::invalid(
            "falta el campo «type» o no es un texto",
        ));
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        return Err(FrameError::new(
            ErrorCode::UnknownType,
            format!("tipo de frame desconocido: «{kind}»"),
        ));
    }
    // `null` is not a string either (serde would take it for an absent epoch).
    if kind == "join" && object.get("epoch").is_some_and(|epoch| !epoch.is_string()) {
        return Err(FrameError::invalid("epoch debe ser un texto"));
    }
    let frame: ClientFrame = serde_json::from_value(value)
        .map_err(|error| FrameError::invalid(format!("campos no válidos: {error}")))?;
    if let ClientFrame::Send {
        client_id: Some(id),
        ..
    } = &frame
    {
        if !(1..=MAX_CLIENT_ID_CHARS).contains(&id.chars().count()) {
            return Err(FrameError::invalid(
                "client_id debe tener de 1 a 128 caracteres",
            ));
        }
    }
    Ok(frame)
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
