//! Paso 1 · El upgrade: una petición HTTP que se convierte en WebSocket.
//!
//! El navegador pide `GET /ws/hello?nick=ana` con `Upgrade: websocket`; si respondemos `101`, la
//! misma conexión TCP deja de hablar HTTP. Por eso todo lo que decide si alguien puede entrar se
//! comprueba ANTES: después del `101` ya no hay códigos de estado, solo frames. Aquí, como en el
//! proyecto, primero el `Origin` (403) y después la identidad (401). En FastAPI lo harías antes de
//! `await websocket.accept()`.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::header::{HOST, ORIGIN};
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;

// ANCHOR: origin
/// Un extractor que deja pasar la petición solo si su `Origin` es de confianza (o no trae ninguno).
///
/// Cualquier página de Internet puede abrir un WebSocket hacia nosotros, y el navegador adjunta
/// las cookies del visitante: sin esta comprobación, `evil.example` hablaría en su nombre
/// (*cross-site WebSocket hijacking*). Los clientes que no son navegadores no envían `Origin`.
pub struct TrustedOrigin;

impl<S: Send + Sync> FromRequestParts<S> for TrustedOrigin {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(origin) = parts.headers.get(ORIGIN) else {
            return Ok(Self);
        };
        let host = parts.headers.get(HOST).and_then(|host| host.to_str().ok());
        match origin.to_str() {
            Ok(origin) if is_trusted(origin, host) => Ok(Self),
            _ => Err((StatusCode::FORBIDDEN, "origen no permitido")),
        }
    }
}

/// La propia página (`http://<Host>`) o `http://localhost`/`127.0.0.1` con cualquier puerto.
/// La comparación es exacta: `http://localhost.evil.example` no pasa.
fn is_trusted(origin: &str, host: Option<&str>) -> bool {
    let origin = origin.to_ascii_lowercase();
    if host.is_some_and(|host| origin == format!("http://{}", host.to_ascii_lowercase())) {
        return true;
    }
    let Some(authority) = origin.strip_prefix("http://") else {
        return false;
    };
    ["localhost", "127.0.0.1"]
        .iter()
        .any(|name| match authority.strip_prefix(name) {
            Some("") => true,
            Some(rest) => rest.strip_prefix(':').is_some_and(|port| {
                !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
            }),
            None => false,
        })
}
// ANCHOR_END: origin

// ANCHOR: nick
/// Quién se conecta: `?nick=ana`. En el proyecto final es un token firmado
/// (`project/src/auth/tokens.rs`); la idea es la misma: sin identidad válida, 401 y no hay socket.
pub struct Nick(pub String);

#[derive(Deserialize)]
struct NickQuery {
    nick: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Nick {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let nick = Query::<NickQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|Query(query)| query.nick)
            .filter(|nick| is_valid_name(nick));
        match nick {
            Some(nick) => Ok(Self(nick)),
            None => Err((
                StatusCode::UNAUTHORIZED,
                "falta ?nick= (de 1 a 20 letras, números, - o _)",
            )),
        }
    }
}
// ANCHOR_END: nick

/// Apodos y salas: de 1 a 20 caracteres, letras, números, `-` o `_`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=20).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

// ANCHOR: upgrade
/// `GET /ws/hello?nick=ana`. Los extractores se ejecutan en orden: si `TrustedOrigin` o `Nick`
/// rechazan, la respuesta es un 403 o un 401 normal y `WebSocketUpgrade` nunca llega a responder 101.
pub async fn hello(
    _origin: TrustedOrigin,
    Nick(nick): Nick,
    upgrade: WebSocketUpgrade,
) -> Response {
    // `on_upgrade` responde 101 ahora y ejecuta `greet` en su propia tarea, ya con el socket.
    upgrade.on_upgrade(move |socket| greet(socket, nick))
}

/// Saluda, cierra con 1000 (cierre normal) y espera un poco a que el cliente confirme el cierre.
async fn greet(mut socket: WebSocket, nick: String) {
    let hello = format!("Hola, {nick}: esta conexión ya es un WebSocket.");
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let bye = CloseFrame {
        code: 1000,
        reason: "hasta luego".into(),
    };
    if socket.send(Message::Close(Some(bye))).await.is_err() {
        return;
    }
    // El cliente responde a nuestro Close con otro; no lo esperamos para siempre.
    let drain = async { while let Some(Ok(_)) = socket.recv().await {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
}
// ANCHOR_END: upgrade
