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

/// The `joined` answer. History frames are stored JSON and are spliced in as they are.
pub fn joined(room: &str, online: &[String], history: &[StoredFrame], truncated: bool) -> String {
    #[derive(Serialize)]
    struct Head<'a> {
        room: &'a str,
        online: &'a [String],
    }
    let head = serde_json::to_string(&Head { room, online }).unwrap_or_else(|_| "{}".into());
    let frames: Vec<&str> = history.iter().map(|frame| frame.json.as_str()).collect();
    let truncated = if truncated {
        r#","truncated":true"#
    } else {
        ""
    };
    format!(
        r#"{{"type":"joined",{},"history":[{}]{truncated}}}"#,
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
                since: Some(3)
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
        let json = joined("general", &["ana".into()], &history, true);
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["type"], "joined");
        assert_eq!(value["online"][0], "ana");
        assert_eq!(value["history"][0]["id"], 1);
        assert_eq!(value["truncated"], true);
        let empty: Value = serde_json::from_str(&joined("general", &[], &[], false)).unwrap();
        assert!(empty.get("truncated").is_none());
    }
}
