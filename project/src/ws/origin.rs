//! The `Origin` check of `/ws`.
//!
//! Browsers send `Origin` with every WebSocket handshake, and a page on any site can open a
//! WebSocket to us: without this check, a malicious page could use a visitor's token (the
//! classic cross-site WebSocket hijacking). Matching is exact: `null`, `https://localhost.evil.com`
//! or `http://localhost:80/x` are refused. Clients that are not browsers send no `Origin` and
//! are allowed.
//!
//! # Why the default may trust the request's own `Host`, and what would break it
//! The default policy accepts the origin of the request's own `Host`, so that students can open
//! an instructor's laptop by its LAN address (`http://192.168.1.20:8000`) with no
//! configuration. A DNS-rebinding page controls that `Host`: it makes its own name resolve to
//! this server, and then its origin *is* the `Host` of its requests, so this check lets it
//! through. That is harmless only because `/ws` authenticates with a **bearer token** the page
//! must present itself (`?token=` or `Authorization`), and a foreign page cannot read the token
//! the real client keeps: it can open a socket, but only as nobody (401). Nothing here may ever
//! rely on **cookies** (or any credential the browser attaches by itself): with cookie auth, a
//! rebinding page would ride the visitor's session. Whoever adds cookies must first drop the
//! `Host` rule and require `CHAT_ALLOWED_ORIGINS`.

/// Which origins may open `/ws`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// `http://localhost[:port]`, `http://127.0.0.1[:port]`, `http://[::1][:port]` and the
    /// origin of the request's own `Host` (what a page served by us sends). Safe only while
    /// authentication is a bearer token, never a cookie (see the module's documentation).
    Default,
    /// Exactly these origins, as `scheme://host[:port]`.
    List(Vec<String>),
}

impl OriginPolicy {
    /// Builds the policy from `CHAT_ALLOWED_ORIGINS` (comma-separated), or the default.
    pub fn from_config(allowed: Option<&str>) -> Self {
        match allowed {
            None => Self::Default,
            Some(list) => Self::List(
                list.split(',')
                    .map(|origin| origin.trim().trim_end_matches('/').to_ascii_lowercase())
                    .filter(|origin| !origin.is_empty())
                    .collect(),
            ),
        }
    }

    // ANCHOR: origin_allows
    /// Whether a request with this `Origin` (and this `Host`) may connect.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.to_ascii_lowercase();
        match self {
            Self::List(allowed) => allowed.contains(&origin),
            Self::Default => {
                let is_own_host = host.is_some_and(|host| {
                    let host = host.to_ascii_lowercase();
                    origin == format!("http://{host}") || origin == format!("https://{host}")
                });
                is_own_host || is_loopback_origin(&origin)
            }
        }
    }
    // ANCHOR_END: origin_allows
}

/// `http://localhost`, `http://127.0.0.1` or `http://[::1]`, with an optional numeric port.
fn is_loopback_origin(origin: &str) -> bool {
    let Some(authority) = origin.strip_prefix("http://") else {
        return false;
    };
    ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|host| match authority.strip_prefix(host) {
            Some("") => true,
            Some(rest) => rest.strip_prefix(':').is_some_and(|port| {
                (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
            }),
            None => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allows_loopback_and_own_host_only() {
        let policy = OriginPolicy::Default;
        for good in [
            "http://localhost",
            "http://localhost:8000",
            "http://127.0.0.1:3000",
            "http://[::1]:8000",
        ] {
            assert!(policy.allows(good, None), "{good} should be allowed");
        }
        assert!(policy.allows("https://chat.example.com", Some("chat.example.com")));
        for bad in [
            "null",
            "https://localhost.evil.com",
            "http://localhost.evil.com",
            "http://localhost:8000.evil.com",
            "http://localhost:80/x",
            "http://evil.com",
            "http://127.0.0.1.evil.com",
            "http://localhost:",
            "https://evil.com",
        ] {
            assert!(
                !policy.allows(bad, Some("chat.example.com")),
                "{bad} should be refused"
            );
        }
        assert!(!policy.allows("http://chat.example.com.evil.com", Some("chat.example.com")));
    }

    #[test]
    fn a_configured_list_is_matched_exactly() {
        let policy =
            OriginPolicy::from_config(Some("https://chat.example.com, http://localhost:8000/"));
        assert!(policy.allows("https://chat.example.com", None));
        assert!(policy.allows("http://localhost:8000", None));
        assert!(!policy.allows("http://localhost:9000", None));
        assert!(!policy.allows("https://chat.example.com.evil.com", None));
        assert!(!policy.allows("null", None));
    }
}
