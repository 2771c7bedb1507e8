//! Fan-out on one node: every event goes straight to the local hub.

use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::{EventSink, Fanout, RoomEvent, StoreResult};

/// With a single node, fan-out is handing the event to the local hub.
pub(super) struct LocalFanout {
    sink: Arc<dyn EventSink>,
}

impl LocalFanout {
    pub(super) fn new(sink: Arc<dyn EventSink>) -> Self {
        Self { sink }
    }
}

#[async_trait]
impl Fanout for LocalFanout {
    async fn publish(&self, event: RoomEvent) -> StoreResult<()> {
        self.sink.deliver(event);
        Ok(())
    }
}
