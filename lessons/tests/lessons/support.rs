//! What every lesson test needs: the lesson's router served on 127.0.0.1 port 0, and a Redis
//! for the lessons that can use one.

#![allow(dead_code)]

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The project's throwaway `redis-server` harness, reused as is: it starts one on a free port
/// when the binary is installed and stops it when the tests end.
#[path = "../../../project/tests/api/redis_server.rs"]
pub mod redis_server;

// ANCHOR: serve
/// A lesson served on a free port until dropped.
pub struct Lesson {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Lesson {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

impl Drop for Lesson {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `app` the way `cargo run --example` does (`lessons::serve_on`), on port 0.
pub async fn serve(app: Router) -> Lesson {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(lessons::serve_on(listener, app, async move {
        let _ = stopped.await;
    }));
    Lesson {
        addr,
        stop: Some(stop),
    }
}
// ANCHOR_END: serve

/// A Redis URL for a lesson test, or `None` after saying why the test is skipped: the
/// project's harness writes one line straight to the process's stderr (which the test harness
/// does not capture, so a skip never looks like a pass) and lists the skipped tests again when
/// the run ends. Under `REQUIRE_REDIS=1` (CI) a missing Redis fails instead.
pub async fn redis_url() -> Option<String> {
    redis_server::redis_url().await
}
