//! The message log: ids, history and the broadcast of each message, kept in step by one script.

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Keys, store_error};
use crate::backend::{
    Appended, Checked, Draft, HistoryPage, HistoryQuery, IDEMPOTENCY_WINDOW, MessageLog, RoomStore,
    StoreError, StoreResult, StoredFrame, message_frame_parts,
};
use crate::domain::RoomId;

static APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("append.lua")));
static EPOCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("epoch.lua")));

/// Each room has a counter (`{p}:seq:{room}`) and a sorted set of frames scored by id
/// (`{p}:history:{room}`), so that a page of history is one range query by score. The script
/// that appends also trims the set to the newest `history_limit`; a cursor below the oldest kept
/// id simply matches from there.
pub(super) struct RedisLog {
    conn: ConnectionManager,
    keys: Keys,
    history_limit: usize,
}

impl RedisLog {
    pub(super) fn new(conn: ConnectionManager, keys: Keys, history_limit: usize) -> Self {
        Self {
            conn,
            keys,
            history_limit: history_limit.max(1),
        }
    }
}

#[async_trait]
impl MessageLog for RedisLog {
    async fn append(&self, draft: Draft) -> StoreResult<Appended> {
        let (frame, outcome) = self.run_append(&draft, "").await?;
        match outcome {
            Outcome::Stored => Ok(Appended {
                frame,
                duplicate: false,
            }),
            Outcome::Duplicate => Ok(Appended {
                frame,
                duplicate: true,
            }),
            Outcome::NotFound | Outcome::NotMember => Err(StoreError::Corrupt(
                "el script de envío comprobó una sala sin que se lo pidieran".into(),
            )),
        }
    }

    /// One script, so one round trip: the checks and the append (see `append.lua`). `rooms`
    /// is not asked: its data lives in this same Redis.
    async fn append_checked(&self, _rooms: &dyn RoomStore, draft: Draft) -> StoreResult<Checked> {
        let (frame, outcome) = self.run_append(&draft, &draft.user).await?;
        Ok(match outcome {
            Outcome::Stored => Checked::Stored(frame),
            Outcome::Duplicate => Checked::Duplicate(frame),
            Outcome::NotFound => Checked::NotFound,
            Outcome::NotMember => Checked::NotMember,
        })
    }

    async fn history(&self, room: &RoomId, query: HistoryQuery) -> StoreResult<HistoryPage> {
        // `(N` is an exclusive bound in Redis. `newest_first` reads from the top of the range
        // (the newest `limit`), otherwise from its bottom (the oldest `limit`).
        let (newest_first, low, high, limit) = match query {
            HistoryQuery::Latest { limit } => (true, "-inf".into(), "+inf".into(), limit),
            HistoryQuery::Before { before, limit } => {
                (true, "-inf".into(), format!("({before}"), limit)
            }
            HistoryQuery::After { after, limit } => {
                (false, format!("({after}"), "+inf".into(), limit)
            }
            HistoryQuery::Between {
                after,
                before,
                limit,
            } => (false, format!("({after}"), format!("({before}"), limit),
        };
        // The REV command takes its bounds high first.
        let mut command = if newest_first {
            redis::cmd("ZREVRANGEBYSCORE")
        } else {
            redis::cmd("ZRANGEBYSCORE")
        };
        command.arg(self.keys.history(room.as_str()));
        if newest_first {
            command.arg(high).arg(low);
        } else {
            command.arg(low).arg(high);
        }
        // One frame more than the limit: if it comes back, there are more in that direction.
        let count = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let found: Vec<(Vec<u8>, u64)> = command
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        let has_more = found.len() > limit;
        let mut frames = found
            .into_iter()
            .take(limit)
            .map(|(json, id)| stored_frame(id, json))
            .collect::<StoreResult<Vec<_>>>()?;
        // The REV commands read newest first; a page is always ascending.
        if newest_first {
            frames.reverse();
        }
        Ok(HistoryPage { frames, has_more })
    }

    async fn epoch(&self, room: &RoomId) -> StoreResult<String> {
        // A new name is proposed on every read and kept only when the room has none: then its
        // history (if any) was lost with the key, and ids may start again.
        let proposed = uuid::Uuid::new_v4().simple().to_string();
        EPOCH
            .key(self.keys.epoch(room.as_str()))
            .arg(proposed)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)
    }
}

/// What `append.lua` answered (its third value).
enum Outcome {
    Stored,
    Duplicate,
    NotFound,
    NotMember,
}

impl RedisLog {
    /// Runs `append.lua`; with a non-empty `check_author`, the room's existence and that
    /// author's membership of a private room are checked first. The frame of `NotFound` and
    /// `NotMember` is empty and means nothing.
    async fn run_append(
        &self,
        draft: &Draft,
        check_author: &str,
    ) -> StoreResult<(StoredFrame, Outcome)> {
        let room = draft.room.as_str();
        // The id is only known inside the script, so we send the frame in two halves.
        let (before_id, after_id) = message_frame_parts(draft);
        let mut script = APPEND.key(self.keys.seq(room));
        script
            .key(self.keys.history(room))
            .key(self.keys.rooms())
            .key(self.keys.members(room));
        if let Some(client_id) = &draft.client_id {
            script.key(self.keys.client_id(room, &draft.user, client_id));
        }
        script
            .arg(before_id)
            .arg(after_id)
            .arg(self.keys.events())
            .arg(room)
            .arg(IDEMPOTENCY_WINDOW.as_secs())
            .arg(self.history_limit)
            .arg(check_author);
        let (id, json, outcome): (u64, Vec<u8>, u8) = script
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        let outcome = match outcome {
            0 => Outcome::Stored,
            1 => Outcome::Duplicate,
            2 => Outcome::NotFound,
            3 => Outcome::NotMember,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "el script de envío respondió {other}"
                )));
            }
        };
        Ok((stored_frame(id, json)?, outcome))
    }
}

/// A frame read from Redis: it must be UTF-8, as every frame we store is.
fn stored_frame(id: u64, json: Vec<u8>) -> StoreResult<StoredFrame> {
    let json = String::from_utf8(json)
        .map_err(|_| StoreError::Corrupt(format!("el mensaje {id} no es UTF-8")))?;
    Ok(StoredFrame {
        id,
        json: json.into(),
    })
}
