//! E-mail: what a mention e-mail job carries, how it is rendered (Spanish templates, plain text
//! plus an HTML alternative), and the mailer that sends it with `lettre`: by SMTP when
//! `SMTP_URL` is set, otherwise as an `.eml` file in the outbox folder, so a student sees real
//! e-mails without any mail server.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::JobsConfig;

/// The templates, compiled into the binary. `{{name}}` marks a value.
const TEXT_TEMPLATE: &str = include_str!("templates/mention.txt");
const HTML_TEMPLATE: &str = include_str!("templates/mention.html");
/// Longest quote of a public room's message, in characters.
const MAX_QUOTE_CHARS: usize = 1000;

/// Who to tell about which mention. For a private room `quote` is `None`: the text of a
/// private message never enters the job, so it is neither in Redis nor in the e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    /// The mentioned user's address.
    pub to: String,
    /// The mentioned user.
    pub user: String,
    /// Who wrote the message.
    pub author: String,
    /// The room's id (`general`), and its name as people see it (`General`).
    pub room: String,
    pub room_name: String,
    /// A private room's e-mail says who wrote and where, never what.
    pub private: bool,
    pub message_id: u64,
    /// The message text, only for a public room.
    pub quote: Option<String>,
}

/// The payload of an e-mail job, as the queue stores it.
///
/// The attempt number and the last error travel in the payload, not in the queue's own
/// bookkeeping: a retry is a new push of this payload with `attempt + 1`, so our retry policy
/// (not apalis-redis's built-in one) is the one that runs, and it survives restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailJob {
    /// Our id, stable across retries (the queue's task ids change on each push).
    pub id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub created_at: String,
    pub last_error: Option<String>,
    pub mention: Mention,
}

/// A rendered e-mail: its subject, the plain text and the HTML alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Renders the mention e-mail. `window` is the e-mail rate limit, which the footer explains.
pub fn render(mention: &Mention, window: Duration) -> Rendered {
    let window = describe(window);
    let quote: Option<String> = mention
        .quote
        .as_ref()
        .map(|text| text.chars().take(MAX_QUOTE_CHARS).collect());
    let text_quote = match &quote {
        Some(text) => {
            let quoted: Vec<String> = text.lines().map(|line| format!("> {line}")).collect();
            format!("Escribió:\n\n{}", quoted.join("\n"))
        }
        None => "La sala es privada: por eso este e-mail no incluye el texto del mensaje.".into(),
    };
    let html_quote = match &quote {
        Some(text) => format!(
            "<p>Escribió:</p>\n<blockquote style=\"border-left: 3px solid #9aa5b1; margin: 0; padding-left: 1em; white-space: pre-wrap;\">{}</blockquote>",
            escape_html(text)
        ),
        None => "<p><em>La sala es privada: por eso este e-mail no incluye el texto del mensaje.</em></p>".into(),
    };
    let common = [
        ("user", mention.user.as_str()),
        ("author", mention.author.as_str()),
        ("room", mention.room.as_str()),
        ("room_name", mention.room_name.as_str()),
        ("window", window.as_str()),
    ];
    let text_values: Vec<(&str, String)> = common
        .iter()
        .map(|(name, value)| (*name, (*value).to_owned()))
        .chain([("quote", text_quote)])
        .collect();
    let html_values: Vec<(&str, String)> = common
        .iter()
        .map(|(name, value)| (*name, escape_html(value)))
        .chain([("quote", html_quote)])
        .collect();
    Rendered {
        // Usernames and room ids are ASCII, so the subject needs no MIME encoding.
        subject: format!("{} te ha mencionado en #{}", mention.author, mention.room),
        text: fill(TEXT_TEMPLATE, &text_values),
        html: fill(HTML_TEMPLATE, &html_values),
    }
}

/// Replaces each `{{name}}` of the template with its value (values are inserted as given: the
/// caller escapes them for HTML).
fn fill(template: &str, values: &[(&str, String)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{{{name}}}}}"), value)
        })
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// "10 minutos", "1 minuto", "45 segundos".
fn describe(window: Duration) -> String {
    match window.as_secs() {
        60 => "1 minuto".into(),
        secs if secs % 60 == 0 && secs > 0 => format!("{} minutos", secs / 60),
        1 => "1 segundo".into(),
        secs => format!("{secs} segundos"),
    }
}

/// Why an e-mail could not be sent (one failed attempt) or the mailer could not start.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("configuración de correo no válida: {0}")]
    Config(String),
    #[error("e-mail mal formado: {0}")]
    Build(String),
    #[error("el servidor SMTP falló: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("no se pudo escribir en la bandeja de salida: {0}")]
    Outbox(#[from] lettre::transport::file::Error),
    #[error("no se pudo dejar el e-mail en la bandeja de salida: {0}")]
    Publish(std::io::Error),
}

/// The folder inside the outbox where each `.eml` is written before it is moved into the
/// outbox itself: a rename within one folder tree is atomic, so whoever reads the outbox (a
/// student, a test, the lesson's page) never opens a half-written e-mail.
const OUTBOX_STAGING: &str = ".escribiendo";

/// Sends e-mails: by SMTP, or into the outbox folder as `.eml` files.
#[derive(Clone)]
pub enum Mailer {
    /// `SMTP_URL` is set: deliver to that server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Write `<uuid>.eml` files into `folder` (`CHAT_OUTBOX`), each one whole: written in
    /// `staging`, then renamed into `folder`.
    Outbox {
        folder: PathBuf,
        staging: PathBuf,
        transport: AsyncFileTransport<Tokio1Executor>,
    },
}

impl Mailer {
    /// The mailer the configuration asks for. A bad `SMTP_URL` stops the start-up instead of
    /// failing every e-mail later. The outbox folder is created with the first e-mail.
    pub fn from_config(config: &JobsConfig) -> Result<Self, MailError> {
        match &config.smtp_url {
            Some(url) => {
                let (host, port) = parse_smtp_url(url)?;
                // `builder_dangerous`: plain SMTP, no TLS (lettre's URL parser needs a TLS
                // feature, which a loopback or LAN relay does not).
                let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(port)
                    .timeout(Some(config.attempt_timeout()))
                    .build();
                Ok(Self::Smtp(transport))
            }
            None => {
                let staging = config.outbox.join(OUTBOX_STAGING);
                Ok(Self::Outbox {
                    folder: config.outbox.clone(),
                    transport: AsyncFileTransport::new(&staging),
                    staging,
                })
            }
        }
    }

    /// Where e-mails go, for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Self::Smtp(_) => "SMTP".into(),
            Self::Outbox { folder, .. } => format!("ficheros .eml en {}", folder.display()),
        }
    }

    /// Builds the e-mail and sends it once.
    pub async fn send(&self, from: &Mailbox, to: &str, email: Rendered) -> Result<(), MailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|error| MailError::Build(format!("destinatario «{to}»: {error}")))?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(email.subject)
            .multipart(MultiPart::alternative_plain_html(email.text, email.html))
            .map_err(|error| MailError::Build(error.to_string()))?;
        match self {
            Self::Smtp(transport) => transport.send(message).await.map(drop)?,
            Self::Outbox {
                folder,
                staging,
                transport,
            } => {
                tokio::fs::create_dir_all(staging).await.map_err(|error| {
                    MailError::Config(format!(
                        "no se pudo crear la bandeja de salida {}: {error}",
                        folder.display()
                    ))
                })?;
                let id = transport.send(message).await?;
                let file = format!("{id}.eml");
                tokio::fs::rename(staging.join(&file), folder.join(&file))
                    .await
                    .map_err(MailError::Publish)?;
            }
        }
        Ok(())
    }
}

/// `smtp://host[:port]` (port 25 by default).
fn parse_smtp_url(url: &str) -> Result<(String, u16), MailError> {
    let invalid = || MailError::Config(format!("SMTP_URL debe ser smtp://host:puerto, no «{url}»"));
    let rest = url.strip_prefix("smtp://").ok_or_else(invalid)?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| invalid())?),
        None => (rest, 25),
    };
    if host.is_empty() {
        return Err(invalid());
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mention(private: bool) -> Mention {
        Mention {
            to: "bea@example.com".into(),
            user: "bea".into(),
            author: "ana".into(),
            room: "proyecto-x".into(),
            room_name: "Proyecto <X>".into(),
            private,
            message_id: 7,
            quote: (!private).then(|| "hola @bea, mira <esto> & aquello".into()),
        }
    }

    #[test]
    fn a_public_mention_names_room_and_author_and_quotes_the_message() {
        let email = render(&mention(false), Duration::from_secs(600));
        assert_eq!(email.subject, "ana te ha mencionado en #proyecto-x");
        assert!(
            email
                .text
                .contains("ana te ha mencionado en la sala «Proyecto <X>» (#proyecto-x)")
        );
        assert!(email.text.contains("> hola @bea, mira <esto> & aquello"));
        assert!(email.text.contains("cada 10 minutos"));
        assert!(email.html.contains("«Proyecto &lt;X&gt;»"));
        assert!(email.html.contains("mira &lt;esto&gt; &amp; aquello"));
        assert!(!email.text.contains("{{") && !email.html.contains("{{"));
    }

    #[test]
    fn a_private_mention_never_contains_the_text() {
        let email = render(&mention(true), Duration::from_secs(600));
        assert!(email.text.contains("ana te ha mencionado"));
        assert!(email.text.contains("La sala es privada"));
        assert!(!email.text.contains("hola") && !email.html.contains("hola"));
    }

    #[test]
    fn smtp_urls_are_host_and_port() {
        assert_eq!(
            parse_smtp_url("smtp://127.0.0.1:2525").unwrap(),
            ("127.0.0.1".into(), 2525)
        );
        assert_eq!(
            parse_smtp_url("smtp://mail.local/").unwrap(),
            ("mail.local".into(), 25)
        );
        assert!(parse_smtp_url("smtps://x:1").is_err());
        assert!(parse_smtp_url("smtp://:25").is_err());
    }

    #[tokio::test]
    async fn the_outbox_only_ever_holds_whole_emails() {
        // Arrange: an outbox folder of this test's own.
        let folder = std::env::temp_dir().join(format!("chat-outbox-{}", uuid::Uuid::new_v4()));
        let staging = folder.join(OUTBOX_STAGING);
        let mailer = Mailer::Outbox {
            folder: folder.clone(),
            transport: AsyncFileTransport::new(&staging),
            staging: staging.clone(),
        };
        let from: Mailbox = "Chat <chat@example.com>".parse().unwrap();

        // Act
        mailer
            .send(
                &from,
                "bea@example.com",
                render(&mention(false), Duration::ZERO),
            )
            .await
            .unwrap();

        // Assert: one complete `.eml` in the outbox, nothing left half-way.
        let emails: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        assert_eq!(emails.len(), 1, "{emails:?}");
        let email = std::fs::read_to_string(&emails[0]).unwrap();
        assert!(email.contains("To: bea@example.com"), "{email}");
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
