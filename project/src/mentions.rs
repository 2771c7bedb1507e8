//! Mentions: `@username` in a message notifies that user.
//!
//! The connection that stored a message hands it to [`crate::jobs::Jobs::message_sent`], which
//! only queues it (never waits); one task, [`run`], does the rest off the chat's path: it finds
//! who was mentioned, and sends each of them a `notification` frame on every live connection
//! (any node), or, when they have none, queues an e-mail job. It runs under the server's
//! supervisor: if it panics, a new one takes the same queue (the messages it was processing
//! lose their mentions).
//!
//! The rule (contract, "Mentions and e-mail notifications"): `@name` is case-insensitive, never
//! notifies the author, and only counts for members of the room (for a public room: its
//! creator and everyone who ever joined it).

use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Audience, Backends, RoomEvent, StoreError};
use crate::domain::Room;
use crate::jobs::Jobs;
use crate::jobs::email::Mention;
pub use crate::jobs::{SentMessage, SentMessages};
use crate::supervisor::Supervisor;

/// Most distinct users one message can notify: a message naming hundreds of users must not
/// turn into hundreds of lookups and e-mails.
pub const MAX_MENTIONS_PER_MESSAGE: usize = 20;
/// How many messages are processed at once (each needs a few backend round trips).
const CONCURRENCY: usize = 8;
/// The task's name for the supervisor and `/ready`.
pub const TASK: &str = "menciones";

/// The queue of sent messages, shared so that a restarted [`run`] drains the same one.
pub type Queue = Arc<tokio::sync::Mutex<SentMessages>>;

/// What the mention logic uses: the backends (rooms, presence, users, fan-out) and the jobs (to
/// queue e-mails). Cheap to clone.
#[derive(Clone)]
pub struct Mentions {
    pub backends: Backends,
    pub jobs: Jobs,
}

/// The usernames mentioned in `text`, lowercased, without repeats, in order of appearance, at
/// most [`MAX_MENTIONS_PER_MESSAGE`].
///
/// A mention is `@` at the start of the text or after a character that cannot be part of a
/// username, followed by a whole username (`[a-z0-9_]`, 3 to 32 characters, any case). So
/// `ana@example.com` mentions nobody and `@anabel` does not mention `ana`.
pub fn parse(text: &str) -> Vec<String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found: Vec<String> = Vec::new();
    let mut previous: Option<char> = None;
    for (at, c) in text.char_indices() {
        let starts_mention = c == '@' && !previous.is_some_and(is_name_char);
        previous = Some(c);
        if !starts_mention {
            continue;
        }
        let rest = &text[at + 1..];
        let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        let name = rest[..end].to_ascii_lowercase();
        if (3..=32).contains(&name.len()) && !found.contains(&name) {
            found.push(name);
            if found.len() == MAX_MENTIONS_PER_MESSAGE {
                break;
            }
        }
    }
    found
}

/// The `notification` frame of the contract.
#[derive(Debug, Serialize)]
struct Notification<'a> {
    #[serde(rename = "type")]
    kind_of_frame: &'static str,
    kind: &'static str,
    room: &'a str,
    message_id: u64,
    from: &'a str,
}

/// Starts [`run`] on `tasks` under `supervisor`, until `shutdown`: a run that panics is
/// replaced by one that drains the same `messages`.
pub fn spawn(
    mentions: Mentions,
    messages: SentMessages,
    tasks: &TaskTracker,
    supervisor: &Supervisor,
    shutdown: CancellationToken,
) {
    let messages: Queue = Arc::new(tokio::sync::Mutex::new(messages));
    let stop = shutdown.clone();
    supervisor.spawn(tasks, TASK, shutdown, move || {
        run(mentions.clone(), messages.clone(), stop.clone())
    });
}

/// Processes the queued messages until the server shuts down (or the queue closes, which
/// happens only once the whole server is gone).
pub async fn run(mentions: Mentions, messages: Queue, shutdown: CancellationToken) {
    let handles = Arc::new(mentions);
    // One run at a time holds the queue; a panic releases it for the next.
    let messages = messages.lock_owned().await;
    let work = futures_util::stream::unfold(messages, |mut messages| async move {
        messages.recv().await.map(|message| (message, messages))
    })
    .for_each_concurrent(CONCURRENCY, |message| {
        let handles = handles.clone();
        async move {
            if let Err(error) = notify(&handles, &message).await {
                tracing::warn!(%error, room = %message.room, message_id = message.message_id,
                    "no se pudieron procesar las menciones de un mensaje");
            }
        }
    });
    if shutdown.run_until_cancelled(work).await.is_some() {
        // Every sender is gone: nothing more will come, so there is nothing to restart.
        shutdown.cancelled().await;
    }
}

/// Notifies everyone `message` mentions: a frame if they are connected, else an e-mail job.
async fn notify(handles: &Mentions, message: &SentMessage) -> Result<(), StoreError> {
    let names = parse(&message.text);
    let backends = &handles.backends;
    let Some(room) = backends.rooms.room(&message.room).await? else {
        return Ok(());
    };
    for name in names.iter().filter(|name| **name != message.author) {
        // Membership is the room's member set for both kinds of room: public rooms add
        // whoever joins them.
        if !backends.rooms.is_member(&message.room, name).await? {
            continue;
        }
        if backends.presence.is_connected(name).await? {
            publish_notification(handles, message, name).await?;
            continue;
        }
        let Some(user) = backends.users.user_by_name(name).await? else {
            continue;
        };
        let mention = mention_email(&room, message, name, &user.user.email);
        if let Err(error) = handles.jobs.queue_mention_email(mention).await {
            tracing::warn!(%error, user = %name, "no se pudo encolar el e-mail de una mención");
        }
    }
    Ok(())
}

/// Sends the `notification` frame to every live connection of `user`, on any node.
async fn publish_notification(
    handles: &Mentions,
    message: &SentMessage,
    user: &str,
) -> Result<(), StoreError> {
    let frame = Notification {
        kind_of_frame: "notification",
        kind: "mention",
        room: message.room.as_str(),
        message_id: message.message_id,
        from: &message.author,
    };
    // Serializing plain strings and numbers cannot fail.
    let frame = serde_json::to_string(&frame).unwrap_or_default();
    let event = RoomEvent {
        room: message.room.clone(),
        message_id: None,
        audience: Audience::User(user.to_owned()),
        frame: frame.into(),
    };
    handles.backends.fanout.publish(event).await
}

/// What the e-mail job needs. A private room's text never leaves this function: the job (and
/// so Redis, the logs and the e-mail) only learns who wrote and where.
fn mention_email(room: &Room, message: &SentMessage, user: &str, address: &str) -> Mention {
    Mention {
        to: address.to_owned(),
        user: user.to_owned(),
        author: message.author.clone(),
        room: room.id.clone(),
        room_name: room.name.clone(),
        private: room.private,
        message_id: message.message_id,
        quote: (!room.private).then(|| message.text.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_whole_usernames_case_insensitively_once_each() {
        assert_eq!(
            parse("hola @Ana y @bea_2, ¿@ANA? (@carl)"),
            vec!["ana", "bea_2", "carl"]
        );
    }

    #[test]
    fn ignores_addresses_fragments_and_impossible_names() {
        assert!(parse("escribe a ana@example.com").is_empty());
        assert!(parse("@ab es corto, @ solo, @@").is_empty());
        assert!(parse(&format!("@{}", "a".repeat(33))).is_empty());
        assert_eq!(parse("@anabel"), vec!["anabel"]);
        assert_eq!(parse("fin.@dani"), vec!["dani"]);
    }

    #[test]
    fn caps_the_number_of_mentions() {
        let text: String = (0..50).map(|i| format!("@user{i} ")).collect();
        assert_eq!(parse(&text).len(), MAX_MENTIONS_PER_MESSAGE);
    }
}
