//! # Ejercicio 4 · Notification System
//!
//! **Objetivo:** un sistema de notificaciones por temas. Los usuarios se suscriben a temas
//! («deploys», «ventas»…); cuando alguien publica en un tema, cada suscrito la recibe **al
//! momento por WebSocket** si tiene alguna pestaña abierta, o **por e-mail** (un job de apalis en
//! segundo plano) si no está conectado. Cada usuario tiene su bandeja con las no leídas, y las
//! marca como leídas por HTTP; sus pestañas abiertas ven el nuevo contador en vivo.
//!
//! **Tiempo estimado:** 2 h.
//!
//! **Antes:** las prácticas 35 (`cargo run --example 35_websockets`: hub de conexiones con colas
//! acotadas) y 36 (`cargo run --example 36_background_tasks`: jobs con apalis y un `Mailer`).
//!
//! **Comprueba tu solución:**
//! ```text
//! cargo test -p exercises ej04
//! cargo run -p exercises --bin grade -- --ejercicio 4
//! ```
//!
//! ## La API
//! | ruta | qué hace |
//! |---|---|
//! | `PUT /users/{user}/subscriptions/{topic}` | suscribe; `204` |
//! | `POST /topics/{topic}/notifications` | `{"title", "body"}` → `202` con [`Published`] (`id`, `online`, `emailed`); `422` si el título está en blanco |
//! | `GET /users/{user}/notifications` | la bandeja: lista de [`Notification`], de la más vieja a la más nueva |
//! | `GET /users/{user}/unread` | `{"unread": N}` |
//! | `POST /users/{user}/notifications/{id}/read` | `{"unread": N}`; `404` si esa notificación no está en su bandeja |
//! | `GET /ws?user=ana` | WebSocket: primero `{"type":"welcome","user":"ana","unread":N}`, luego frames [`ServerFrame`] |
//!
//! Ya están hechos los tipos (con serde), los errores y sus códigos HTTP, las rutas y los
//! handlers HTTP, el upgrade del WebSocket, `render_email`, el worker de apalis
//! ([`spawn_email_worker`], [`start`]) y los ayudantes del registro. Te toca lo que tiene
//! `// TODO:`: los métodos de [`Notifier`], el job [`send_email`] y la conexión
//! ([`handle_socket`]).
//!
//! ## Reglas que se comprueban
//! Núcleo:
//! 1. entrega en tiempo real solo a los suscritos al tema.
//! 2. llega a todas las conexiones abiertas del usuario (varias pestañas).
//! 3. cuenta las no leídas y las marca como leídas por HTTP (la bandeja guarda a todos los
//!    suscritos, conectados o no).
//! 4. sincroniza el contador de no leídas por WebSocket (al conectar y al marcar): el saludo trae
//!    `unread`; al marcar una, cada pestaña recibe `{"type":"unread","count":N}`.
//!
//! Calidad:
//! 5. tras desconectarse, sus notificaciones van por e-mail (la `Connection` se suelta y deja de
//!    contar como conectado).
//! 6. contesta un error a un frame mal formado y sigue atendiendo (`{"type":"ping"}` →
//!    `{"type":"pong"}` después).
//! 7. rechaza lo inválido: título vacío, notificación ajena o inexistente, usuario no válido
//!    (422, 404 y 422), sin cambiar nada.
//!
//! Integración:
//! 8. encola un e-mail (apalis) solo para los suscritos desconectados (uno por usuario, escrito
//!    con `render_email`; a los conectados, ninguno).
//! 9. el job de e-mail envía el correo escrito por `render_email` y propaga el error del `Mailer`
//!    (las comprobaciones usan un [`Mailer`] falso).
//! 10. la transcripción de notificaciones coincide con la de referencia (frames de ana, e-mail de
//!     bea, bandeja y contador).
//!
//! Las pistas están al final del fichero.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use apalis::prelude::{Data, WorkerBuilder};
use apalis_core::backend::dequeue::VecDequeBackend;
use async_trait::async_trait;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Frames que caben en la cola de una conexión; si se llena, ese cliente pierde el aviso en
/// vivo (la notificación sigue en su bandeja, como no leída).
pub const QUEUE: usize = 32;
/// Notificaciones que guarda la bandeja de cada usuario (las más recientes).
pub const MAX_INBOX: usize = 100;
/// Lo más que esperamos a que un cliente acepte un frame.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

// ANCHOR: types
/// Una notificación en la bandeja de un usuario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: u64,
    pub topic: String,
    pub title: String,
    pub body: String,
    pub read: bool,
}

/// El cuerpo de `POST /topics/{topic}/notifications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewNotification {
    pub title: String,
    pub body: String,
}

/// Qué pasó al publicar: los suscritos conectados (se les envió en vivo) y aquellos a los que
/// se les encoló un e-mail, ordenados por nombre.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub id: u64,
    pub online: Vec<String>,
    pub emailed: Vec<String>,
}

/// Lo que el servidor envía por el WebSocket, como JSON con un campo `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Lo primero que recibe cada conexión.
    Welcome {
        user: String,
        unread: usize,
    },
    Notification {
        notification: Notification,
    },
    /// El contador de no leídas cambió (se marcó una como leída, quizá desde otra pestaña).
    Unread {
        count: usize,
    },
    Pong,
    Error {
        message: String,
    },
}

/// Lo que el cliente puede enviar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Ping,
}
// ANCHOR_END: types

/// El trabajo de e-mail: a quién y qué notificación.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailJob {
    pub user: String,
    pub notification: Notification,
}

/// Un e-mail ya escrito.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Escribe el e-mail de un trabajo.
pub fn render_email(job: &EmailJob) -> Email {
    let notification = &job.notification;
    Email {
        to: format!("{}@example.com", job.user),
        subject: format!("[{}] {}", notification.topic, notification.title),
        body: format!(
            "Hola, {}:\n\nMientras no estabas llegó una notificación de «{}».\n\n{}\n\n{}\n",
            job.user, notification.topic, notification.title, notification.body
        ),
    }
}

/// Por qué no se pudo enviar un e-mail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no se pudo enviar el e-mail: {0}")]
pub struct MailError(pub String);

/// Quien envía los e-mails (SMTP en producción; las comprobaciones usan uno falso que los
/// guarda). Es un trait para que el job no dependa de cómo se envían.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, email: Email) -> Result<(), MailError>;
}

/// El [`Mailer`] que recibe el worker con `.data(...)`: un `Arc` para compartirlo entre todos
/// los trabajos. (Es un tipo propio y no `Arc<dyn Mailer>` a secas porque así apalis puede
/// comprobar que su handler vale para cualquier trabajo: el compilador no se lía con lifetimes.)
#[derive(Clone)]
pub struct SharedMailer(pub Arc<dyn Mailer>);

/// La cola de e-mails: el backend en memoria de apalis (clonarlo comparte la misma cola).
pub type EmailQueue = VecDequeBackend<EmailJob>;

/// Los errores de la API, cada uno con su código HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("nombre no válido: «{0}» (de 1 a 32 letras, números, - o _)")]
    InvalidName(String),
    #[error("el título no puede estar vacío")]
    EmptyTitle,
    #[error("no existe la notificación {0}")]
    NotFound(u64),
    #[error("no se pudo encolar el e-mail: {0}")]
    Queue(String),
}

impl IntoResponse for NotifyError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::InvalidName(_) | Self::EmptyTitle => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Queue(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = serde_json::json!({ "error": self.to_string() });
        (status, Json(body)).into_response()
    }
}

/// Un nombre de usuario o de tema válido: 1–32 caracteres ASCII, letras, números, `-` o `_`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Todo lo que protege el candado. Es un `std::sync::Mutex`: nunca lo tenemos a través de un
/// `.await` (ni al enviar por el socket ni al encolar un e-mail).
#[derive(Default)]
struct Registry {
    next_id: u64,
    next_connection: u64,
    /// Tema → usuarios suscritos.
    subscriptions: HashMap<String, BTreeSet<String>>,
    /// Usuario → sus notificaciones, de la más vieja a la más nueva.
    inboxes: HashMap<String, VecDeque<Notification>>,
    /// Usuario → sus conexiones abiertas (una por pestaña), cada una con su cola.
    online: HashMap<String, HashMap<u64, mpsc::Sender<ServerFrame>>>,
}

impl Registry {
    fn unread(&self, user: &str) -> usize {
        self.inboxes
            .get(user)
            .map_or(0, |inbox| inbox.iter().filter(|n| !n.read).count())
    }

    /// Ofrece `frame` a cada conexión de `user` sin esperar; devuelve a cuántas llegó.
    fn send_to(&self, user: &str, frame: &ServerFrame) -> usize {
        let Some(connections) = self.online.get(user) else {
            return 0;
        };
        let mut delivered = 0;
        for queue in connections.values() {
            match queue.try_send(frame.clone()) {
                Ok(()) => delivered += 1,
                // Cola llena (un cliente que no lee) o conexión cerrándose: no esperamos por
                // él; la notificación sigue en su bandeja.
                Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {}
            }
        }
        delivered
    }
}

struct Inner {
    state: Mutex<Registry>,
    emails: EmailQueue,
}

// ANCHOR: notifier
/// El sistema de notificaciones. Barato de clonar: todos los clones comparten el estado.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

/// Una conexión WebSocket registrada. Al soltarla (`Drop`) el usuario deja de contar como
/// conectado en ella, termine como termine la tarea (cierre, error o pánico).
pub struct Connection {
    notifier: Notifier,
    user: String,
    id: u64,
    /// Los frames que el hub le manda a esta conexión.
    pub frames: mpsc::Receiver<ServerFrame>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.notifier.disconnect(&self.user, self.id);
    }
}

impl Notifier {
    /// Un sistema vacío que encola sus e-mails en `emails`.
    pub fn new(emails: EmailQueue) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(Registry::default()),
                emails,
            }),
        }
    }

    /// Un mutex envenenado sigue sirviendo: cada operación cambia el estado de una vez.
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Suscribe a `user` al tema `topic` (suscribirse dos veces no hace nada más).
    pub fn subscribe(&self, user: &str, topic: &str) -> Result<(), NotifyError> {
        // TODO: valida los dos nombres con `is_valid_name` (si no, `NotifyError::InvalidName`)
        // y añade `user` al conjunto de `subscriptions[topic]` (`entry(...).or_default().insert(...)`).
        todo!("suscribe al usuario al tema")
    }

    /// Publica en `topic`: la guarda en la bandeja de cada suscrito, se la envía en vivo a los
    /// conectados y encola un e-mail para cada desconectado.
    pub async fn publish(
        &self,
        topic: &str,
        new: NewNotification,
    ) -> Result<Published, NotifyError> {
        // TODO: valida el tema y el título (`NotifyError::InvalidName`, `NotifyError::EmptyTitle`).
        // Con el candado (y sin `.await`): nuevo id, la `Notification` (read: false) y, para cada
        // suscrito del tema, guárdala en su bandeja (como mucho `MAX_INBOX`); si está en `online`,
        // `send_to` con `ServerFrame::Notification` y apúntalo en `online`; si no, prepara un
        // `EmailJob` y apúntalo en `emailed`. Suelta el candado y encola cada trabajo con
        // `queue.push(job).await` (`apalis::prelude::TaskSink`) sobre un clon de `self.inner.emails`.
        todo!("publica: bandejas, entrega en vivo y e-mails para los desconectados")
    }

    /// Registra una conexión de `user`: desde ahora cuenta como conectado.
    pub fn connect(&self, user: &str) -> Connection {
        // TODO: crea una cola `mpsc::channel(QUEUE)`, dale a la conexión un id nuevo
        // (`next_connection`), guarda el emisor en `online[user][id]` y devuelve la `Connection`
        // con el receptor.
        todo!("registra la conexión del usuario")
    }

    /// Olvida la conexión `id` de `user`; sin conexiones, el usuario pasa a desconectado.
    /// La llama el `Drop` de [`Connection`].
    fn disconnect(&self, user: &str, id: u64) {
        // TODO: quita la conexión `id` de `online[user]`; si el usuario se queda sin conexiones,
        // quítalo de `online` (así `is_online` dice que no y sus notificaciones van por e-mail).
        // (Sin `todo!()` a propósito: se llama desde un `Drop`, y un pánico ahí lo tumba todo.)
    }

    /// ¿Tiene `user` alguna conexión abierta?
    pub fn is_online(&self, user: &str) -> bool {
        // TODO: ¿hay una entrada de `user` en `online`?
        todo!("di si el usuario tiene alguna conexión abierta")
    }

    /// Las notificaciones de `user`, de la más vieja a la más nueva.
    pub fn notifications(&self, user: &str) -> Vec<Notification> {
        // TODO: copia la bandeja de `user` (vacía si no tiene).
        todo!("devuelve la bandeja del usuario")
    }

    /// Cuántas notificaciones de `user` siguen sin leer.
    pub fn unread(&self, user: &str) -> usize {
        // TODO: cuenta las no leídas (hay un ayudante `Registry::unread`).
        todo!("cuenta las no leídas del usuario")
    }

    /// Marca como leída la notificación `id` de `user` y avisa a todas sus conexiones del nuevo
    /// contador. Devuelve ese contador. Marcarla dos veces no es un error.
    pub fn mark_read(&self, user: &str, id: u64) -> Result<usize, NotifyError> {
        // TODO: busca la notificación `id` en la bandeja de `user` (`iter_mut().find`); si no está,
        // `NotifyError::NotFound(id)`. Ponle `read = true`, calcula las no leídas, envíalas a sus
        // conexiones con `send_to(user, &ServerFrame::Unread { count })` y devuélvelas.
        todo!("marca la notificación como leída y avisa del nuevo contador")
    }
}
// ANCHOR_END: notifier

// ANCHOR: email_job
/// El job de e-mail: lo ejecuta el worker de apalis, con el [`Mailer`] que recibió con `.data`.
/// Devolver el error deja que apalis lo registre (y lo reintente si se configura).
pub async fn send_email(
    job: EmailJob,
    Data(SharedMailer(mailer)): Data<SharedMailer>,
) -> Result<(), MailError> {
    // TODO: envía `render_email(&job)` con `mailer.send(...).await` y devuelve su resultado.
    todo!("envía el e-mail del trabajo por el Mailer")
}
// ANCHOR_END: email_job

/// Arranca el worker de apalis que ejecuta [`send_email`] con los trabajos de `queue`.
pub fn spawn_email_worker(queue: EmailQueue, mailer: Arc<dyn Mailer>) {
    let worker = WorkerBuilder::new("notificaciones-email")
        .backend(queue)
        .data(SharedMailer(mailer))
        .build(send_email);
    tokio::spawn(async move {
        if let Err(error) = worker.run().await {
            tracing::error!(%error, "el worker de e-mail se detuvo");
        }
    });
}

/// Crea la cola, arranca el worker y devuelve el sistema listo para [`app`]. Hay que llamarla
/// dentro de un runtime de Tokio.
pub fn start(mailer: Arc<dyn Mailer>) -> Notifier {
    let queue = EmailQueue::new();
    spawn_email_worker(queue.clone(), mailer);
    Notifier::new(queue)
}

// ANCHOR: router
/// Las rutas del sistema de notificaciones.
pub fn app(notifier: Notifier) -> Router {
    Router::new()
        .route("/ws", get(ws))
        .route("/users/{user}/subscriptions/{topic}", put(subscribe))
        .route("/topics/{topic}/notifications", post(publish))
        .route("/users/{user}/notifications", get(notifications))
        .route("/users/{user}/notifications/{id}/read", post(mark_read))
        .route("/users/{user}/unread", get(unread))
        .with_state(notifier)
}
// ANCHOR_END: router

/// `PUT /users/{user}/subscriptions/{topic}` → 204.
pub async fn subscribe(
    State(notifier): State<Notifier>,
    Path((user, topic)): Path<(String, String)>,
) -> Result<StatusCode, NotifyError> {
    notifier.subscribe(&user, &topic)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /topics/{topic}/notifications` → 202 con [`Published`].
pub async fn publish(
    State(notifier): State<Notifier>,
    Path(topic): Path<String>,
    Json(new): Json<NewNotification>,
) -> Result<(StatusCode, Json<Published>), NotifyError> {
    let published = notifier.publish(&topic, new).await?;
    Ok((StatusCode::ACCEPTED, Json(published)))
}

/// `GET /users/{user}/notifications` → la bandeja.
pub async fn notifications(
    State(notifier): State<Notifier>,
    Path(user): Path<String>,
) -> Json<Vec<Notification>> {
    Json(notifier.notifications(&user))
}

/// `POST /users/{user}/notifications/{id}/read` → `{"unread": N}`, o 404.
pub async fn mark_read(
    State(notifier): State<Notifier>,
    Path((user, id)): Path<(String, u64)>,
) -> Result<Json<serde_json::Value>, NotifyError> {
    let unread = notifier.mark_read(&user, id)?;
    Ok(Json(serde_json::json!({ "unread": unread })))
}

/// `GET /users/{user}/unread` → `{"unread": N}`.
pub async fn unread(
    State(notifier): State<Notifier>,
    Path(user): Path<String>,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "unread": notifier.unread(&user) }))
}

/// `?user=` de `GET /ws`.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    pub user: Option<String>,
}

/// `GET /ws?user=ana`: valida el usuario antes del upgrade (un 422 es más claro que un cierre).
pub async fn ws(
    State(notifier): State<Notifier>,
    Query(query): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let user = query.user.unwrap_or_default();
    if !is_valid_name(&user) {
        return NotifyError::InvalidName(user).into_response();
    }
    upgrade
        // Los clientes solo envían pings: 4 KiB son de sobra y acotan la memoria por conexión.
        .max_message_size(4 * 1024)
        .on_upgrade(move |socket| handle_socket(socket, notifier, user))
}

/// Envía un frame con un tiempo máximo: un cliente que no lee no retiene la tarea para siempre.
async fn send_frame(socket: &mut WebSocket, frame: &ServerFrame) -> Result<(), ()> {
    let text = serde_json::to_string(frame).map_err(|_| ())?;
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::text(text))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

// ANCHOR: socket
/// La vida de una conexión: se registra, saluda con las no leídas y después reenvía lo que
/// le llega por su cola mientras contesta a lo que envía el cliente.
pub async fn handle_socket(socket: WebSocket, notifier: Notifier, user: String) {
    // TODO: `notifier.connect(&user)`; envía `ServerFrame::Welcome` (con `notifier.unread`) con
    // `send_frame`; después, en un bucle con `tokio::select!`: lo que llegue por
    // `connection.frames` se reenvía al socket; lo que envíe el cliente (`socket.recv()`): un
    // `ClientFrame::Ping` se contesta con `ServerFrame::Pong`, un texto que no se entiende con
    // `ServerFrame::Error`, y un cierre, un error o `None` terminan el bucle.
    todo!("atiende la conexión: saludo, reenvío de la cola y respuesta a los pings")
}
// ANCHOR_END: socket

// ---------------------------------------------------------------------------------------------
// Pistas
// ---------------------------------------------------------------------------------------------
//
// Pista 1 (la idea)
//   Todo el estado vive en un `Registry` detrás de un `std::sync::Mutex`: temas → usuarios,
//   usuario → bandeja, usuario → conexiones abiertas (cada una con su cola `mpsc` acotada).
//   Publicar es, con el candado tomado: guardar en la bandeja de cada suscrito y, si está
//   conectado, dejar el frame en sus colas con `try_send` (nunca esperar por un cliente lento);
//   si no, apuntar un `EmailJob`. Los e-mails se encolan DESPUÉS de soltar el candado, porque
//   `push` es `async` y un candado de std no se mantiene a través de un `.await`.
//   La tarea de cada WebSocket solo hace de cartero: de su cola al socket, y del socket pings.
//
// Pista 2 (la API)
//   - `self.lock()` te da el `Registry`; `state.send_to(user, &frame)` y `state.unread(user)`
//     ya están hechos.
//   - `subscriptions.entry(topic.to_owned()).or_default().insert(user.to_owned())`.
//   - `let mut queue = self.inner.emails.clone(); queue.push(job).await` con
//     `use apalis::prelude::TaskSink;` (el error: `NotifyError::Queue(error.to_string())`).
//   - En `handle_socket`: `tokio::select! { frame = connection.frames.recv() => …,
//     incoming = socket.recv() => … }`; `serde_json::from_str::<ClientFrame>(&text)`;
//     `send_frame(&mut socket, &frame).await` ya pone un tiempo máximo (declara el parámetro
//     como `mut socket`).
//   - `send_email`: `mailer.send(render_email(&job)).await`.
//
// Pista 3 (casi el código de publish)
//   let (published, jobs) = {
//       let mut state = self.lock();
//       state.next_id += 1;
//       let notification = Notification { id: state.next_id, topic: topic.to_owned(),
//                                         title: new.title, body: new.body, read: false };
//       let subscribers: Vec<String> = state.subscriptions.get(topic)
//           .map(|users| users.iter().cloned().collect()).unwrap_or_default();
//       let mut published = Published { id: notification.id, online: vec![], emailed: vec![] };
//       let mut jobs = Vec::new();
//       for user in subscribers {
//           let inbox = state.inboxes.entry(user.clone()).or_default();
//           inbox.push_back(notification.clone());
//           while inbox.len() > MAX_INBOX { inbox.pop_front(); }
//           if state.online.contains_key(&user) {
//               state.send_to(&user, &ServerFrame::Notification { notification: notification.clone() });
//               published.online.push(user);
//           } else {
//               jobs.push(EmailJob { user: user.clone(), notification: notification.clone() });
//               published.emailed.push(user);
//           }
//       }
//       (published, jobs)
//   };
//   // …y ahora, sin candado, `queue.push(job).await` por cada trabajo.
