//! Domain types: validated newtypes and the records the backends store.
//!
//! Validation lives here, in `parse` constructors, so handlers only ever see valid values
//! (the "parse, don't validate" idea from zero-to-production).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was rejected; the text is Spanish because it reaches the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A username: 3–32 characters of `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Username(String);

// ANCHOR: username
impl Username {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let valid_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if (3..=32).contains(&raw.len()) && valid_chars {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Invalid(
                "el nombre de usuario debe tener de 3 a 32 caracteres [a-z0-9_]".into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
// ANCHOR_END: username

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A room id: a slug of 1–32 characters of `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoomId(String);

impl RoomId {
    /// The room that always exists.
    pub fn general() -> Self {
        Self("general".into())
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let valid_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if (1..=32).contains(&raw.len()) && valid_chars {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Invalid(
                "el id de la sala debe ser un slug de 1 a 32 caracteres [a-z0-9-]".into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address, checked for shape only (the only real check is sending a mail to it).
///
/// Uniqueness is case-insensitive, so the backends index it by [`Email::key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = || Invalid("el e-mail no es válido".into());
        let (local, domain) = raw.split_once('@').ok_or_else(invalid)?;
        let well_formed = !local.is_empty()
            && raw.len() <= 254
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive identity of the address.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A password as typed, before hashing: at least 8 characters.
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.chars().count() >= 8 {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Invalid(
                "la contraseña debe tener al menos 8 caracteres".into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(description = "Rol de la cuenta: `member` o `admin`")]
pub enum Role {
    Member,
    Admin,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(description = "Una cuenta tal como la muestra la API (nunca incluye la contraseña)")]
pub struct User {
    #[schema(example = "5f0c1b9e-8d1a-4c55-9a57-3a7f1e2b6c01")]
    pub id: String,
    #[schema(example = "ana_99", pattern = "^[a-z0-9_]{3,32}$")]
    pub username: String,
    #[schema(example = "ana@example.com")]
    pub email: String,
    pub role: Role,
}

/// A user as stored: the public part plus the Argon2id hash (never serialized to clients).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: String,
}

/// A room as stored. `members` and `online` counts are computed when listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    pub id: String,
    pub name: String,
    pub private: bool,
    /// Who created it (`None` for `general`); the creator may invite to a private room.
    pub created_by: Option<String>,
}

/// A stored chat message. Its JSON is exactly the live `message` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(
    description = "Un mensaje guardado: idéntico al frame `message` del WebSocket. `id` es un entero por sala, estrictamente creciente; `client_id` solo aparece si el cliente lo envió"
)]
pub struct ChatMessage {
    #[serde(rename = "type")]
    pub kind: MessageTag,
    #[schema(example = "general")]
    pub room: String,
    #[schema(example = 42)]
    pub id: u64,
    #[schema(example = "ana_99")]
    pub user: String,
    #[schema(example = "hola @luis")]
    pub text: String,
    #[schema(example = "2026-11-27T10:15:00.123Z")]
    pub ts: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
}

/// The constant `"type":"message"` tag of a [`ChatMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(description = "Siempre `message`")]
pub enum MessageTag {
    Message,
}

/// Current time as RFC 3339 UTC with milliseconds, the contract's time format.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_contract() {
        assert!(Username::parse("ana_99").is_ok());
        for bad in ["ab", "Ana", "ana maría", "a-b-c", &"a".repeat(33), ""] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn room_ids_are_slugs() {
        assert!(RoomId::parse("general").is_ok());
        assert!(RoomId::parse("a").is_ok());
        assert!(RoomId::parse("sala-1").is_ok());
        for bad in ["", "Sala", "sala_1", "sala 1", &"a".repeat(33)] {
            assert!(RoomId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn emails_are_checked_for_shape_and_compared_case_insensitively() {
        assert_eq!(
            Email::parse("Ana@Example.com").map(|e| e.key()),
            Ok("ana@example.com".into())
        );
        for bad in [
            "ana",
            "@x.com",
            "ana@",
            "ana@x",
            "a b@x.com",
            "a@@x.com",
            "a@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        assert!(Password::parse("ñññññññ").is_err());
        assert!(Password::parse("ññññññññ").is_ok());
    }
}
