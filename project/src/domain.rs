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

/// An e-mail address: a bare `local@domain`, as a mailbox name and nothing else.
///
/// No display name, quotes, angle brackets, comments, lists, spaces, control or invisible
/// characters: a mailer would read those forms (`<victim@corp.example.com>`,
/// `"victim"@corp.example.com`) as another address than the text the uniqueness check saw, and
/// deliver one user's mail to another. The local part is dot-separated atoms (RFC 5322
/// `atext`, plus letters beyond ASCII); the domain is two or more labels of letters, digits and
/// inner hyphens. Shape is all that is checked: the only real check is sending a mail to it.
///
/// Uniqueness is case-insensitive, so the backends index it by [`Email::key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = || {
            Invalid(
                "el e-mail no es válido: escribe solo la dirección, como ana@example.com".into(),
            )
        };
        let (local, domain) = raw.split_once('@').ok_or_else(invalid)?;
        let well_formed = raw.len() <= 254
            && (1..=64).contains(&local.len())
            && is_dot_atom(local, |c| {
                c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || is_letter(c)
            })
            && domain.len() <= 253
            && domain.split('.').count() >= 2
            && domain.split('.').all(is_domain_label);
        // The mailer must be able to send to it too.
        if well_formed && raw.parse::<lettre::Address>().is_ok() {
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

/// A letter or digit beyond ASCII (`josé`, `ñandú`), never a space, a mark alone, a control,
/// format or invisible character.
fn is_letter(c: char) -> bool {
    !c.is_ascii() && c.is_alphanumeric() && !is_invisible(c)
}

/// Non-empty atoms of `atom_char` separated by single dots: no dot first, last or twice.
fn is_dot_atom(text: &str, atom_char: impl Fn(char) -> bool) -> bool {
    text.split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(&atom_char))
}

/// A DNS label: 1–63 bytes of letters and digits, with hyphens inside only.
fn is_domain_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || is_letter(c))
}

/// A room's display name: 1–64 characters once trimmed, with something visible, and no
/// control character (Unicode Cc: C0, DEL, C1) or bidirectional override or isolate
/// (U+202A–U+202E, U+2066–U+2069).
///
/// A name reaches every client's room list, page titles, logs and e-mail subjects: a CR/LF
/// could forge a log line or a header, an ANSI escape repaint a terminal, and a bidi override
/// show `moc.elpmaxe` as `example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(Invalid(
                "el nombre de la sala debe tener de 1 a 64 caracteres".into(),
            ));
        }
        if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            return Err(Invalid(
                "el nombre de la sala no puede tener caracteres de control ni de cambio de dirección del texto".into(),
            ));
        }
        if !has_visible_text(name) {
            return Err(Invalid(
                "el nombre de la sala debe tener algún carácter visible".into(),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Bidirectional embeddings, overrides (U+202A–U+202E) and isolates (U+2066–U+2069).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt, Unicode 16.0):
/// characters that a renderer shows as nothing when it does not support them (zero-width
/// spaces and joiners, bidi and other format controls, variation selectors, tags, fillers).
const DEFAULT_IGNORABLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFF8}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// Whether `c` shows nothing: White_Space (`char::is_whitespace` is exactly that property) or
/// Default_Ignorable_Code_Point.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || DEFAULT_IGNORABLE
            .iter()
            .any(|&(first, last)| (first..=last).contains(&c))
}

/// Whether a text has at least one character that is not [invisible](is_invisible). This is
/// the contract's rule for `empty_text`: anything else counts as visible, a lone combining
/// mark included (it renders on a dotted circle).
pub fn has_visible_text(text: &str) -> bool {
    text.chars().any(|c| !is_invisible(c))
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
            "<a@x.com>",
            "\"a\"@x.com",
            "A <a@x.com>",
            "a@x.com,b@x.com",
            "a\u{0}@x.com",
            "a\u{2060}@x.com",
            &format!("{}@x.com", "a".repeat(65)),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        for good in [
            "a@x.co",
            "a.b+c@x-y.example",
            "josé@ñandú.es",
            "{t}|~@x.com",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn room_names_refuse_controls_bidi_overrides_and_invisible_names() {
        assert_eq!(
            RoomName::parse("  Proyecto X ").unwrap().as_str(),
            "Proyecto X"
        );
        assert!(RoomName::parse("Café ☕ 🎉").is_ok());
        assert!(
            RoomName::parse("ש\u{200F}ם").is_ok(),
            "a bidi mark (not an override) is fine"
        );
        for bad in [
            "",
            "   ",
            "a\u{0}b",
            "a\r\nb",
            "\u{1b}[31mrojo",
            "a\u{7f}",
            "a\u{85}b",
            "a\u{9b}b",
            "moc.\u{202E}elpmaxe",
            "a\u{202A}b",
            "a\u{2066}b",
            "a\u{2069}b",
            "\u{200B}\u{200B}",
            &"a".repeat(65),
        ] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_text_of_only_whitespace_and_ignorable_characters_is_not_visible() {
        for blank in [
            "",
            " \t\n\r",
            "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}",
            "\u{00A0}\u{3000}\u{2028}\u{85}",
            "\u{E0041}\u{FE0F}\u{3164}\u{AD}",
        ] {
            assert!(!has_visible_text(blank), "{blank:?} shows nothing");
        }
        for visible in ["a", " . ", "\u{301}", "\u{200B}x", "🎉", "\u{E1000}"] {
            assert!(has_visible_text(visible), "{visible:?} shows something");
        }
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        assert!(Password::parse("ñññññññ").is_err());
        assert!(Password::parse("ññññññññ").is_ok());
    }
}
