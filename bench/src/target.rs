//! The server under load: its address (always loopback) and what it speaks.

use std::net::SocketAddr;

use anyhow::{Context, bail};

/// What the generator talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A server of the contract: accounts, tokens, `join`/`joined`, JSON frames.
    Chat,
    /// [`crate::baseline`]: no accounts, `/ws?room=`, every frame echoed raw to the room.
    Baseline,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Baseline => "base",
        }
    }
}

/// A server on this machine.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base: String,
    /// The address every connection goes to.
    pub addr: SocketAddr,
    /// The server's process, to read its memory and CPU in `/proc`.
    pub pid: Option<u32>,
    /// Admin credentials (the `sse` and `jobs` scenarios on a chat).
    pub admin: Option<(String, String)>,
}

impl Target {
    /// Resolves `url` and refuses anything that is not loopback: this tool floods what it
    /// points at, so it only ever points at this machine.
    pub async fn resolve(kind: Kind, url: &str, pid: Option<u32>) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("URL no válida: {url}"))?;
        if parsed.scheme() != "http" {
            bail!("solo se admite http:// (en loopback no hace falta TLS): {url}");
        }
        let host = parsed
            .host_str()
            .with_context(|| format!("la URL no tiene host: {url}"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("no se pudo resolver {host}"))?
            .collect();
        let Some(addr) = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
        else {
            bail!("{host} no resuelve a ninguna dirección");
        };
        if let Some(outside) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "chat-bench solo carga servidores de esta máquina (loopback); {host} resuelve a {}",
                outside.ip()
            );
        }
        Ok(Self {
            kind,
            base: format!("http://{addr}"),
            addr,
            pid,
            admin: None,
        })
    }

    pub fn with_admin(mut self, user: String, password: Option<String>) -> Self {
        self.admin = password.map(|password| (user, password));
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}
