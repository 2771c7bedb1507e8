//! Solución de referencia del ejercicio 4 · Notification System (el enunciado, las reglas y las
//! pistas están en `exercises/src/ej04_notifications.rs`).
//!
//! Tres piezas de las prácticas 35 y 36 juntas:
//! - un hub de conexiones WebSocket por usuario (cada conexión, su cola acotada);
//! - suscripciones por tema y una bandeja de entrada por usuario, con sus no leídas;
//! - un job de apalis (backend en el proceso) que envía por e-mail, a través del trait
//!   [`Mailer`], lo que no se pudo entregar en vivo porque el usuario no estaba conectado.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use apalis::prelude::{Data, TaskSink, WorkerBuilder};
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

// ANCHOR: registry
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
// ANCHOR_END: registry

struct Inner {
    state: Mutex<Registry>,
    emails: EmailQueue,
}

/// El sistema de notificaciones. Barato de clonar: todos los clones comparten el estado.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

// ANCHOR: connection
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
// ANCHOR_END: connection

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
        for name in [user, topic] {
            if !is_valid_name(name) {
                return Err(NotifyError::InvalidName(name.to_owned()));
            }
        }
        self.lock()
            .subscriptions
            .entry(topic.to_owned())
            .or_default()
            .insert(user.to_owned());
        Ok(())
    }

    // ANCHOR: publish
    /// Publica en `topic`: la guarda en la bandeja de cada suscrito, se la envía en vivo a los
    /// conectados y encola un e-mail para cada desconectado.
    pub async fn publish(
        &self,
        topic: &str,
        new: NewNotification,
    ) -> Result<Published, NotifyError> {
        if !is_valid_name(topic) {
            return Err(NotifyError::InvalidName(topic.to_owned()));
        }
        if new.title.trim().is_empty() {
            return Err(NotifyError::EmptyTitle);
        }
        // Todo lo que toca el estado ocurre con el candado y sin `.await`; los e-mails se
        // encolan después, ya sin él.
        let (published, jobs) = {
            let mut state = self.lock();
            state.next_id += 1;
            let notification = Notification {
                id: state.next_id,
                topic: topic.to_owned(),
                title: new.title,
                body: new.body,
                read: false,
            };
            let subscribers: Vec<String> = state
                .subscriptions
                .get(topic)
                .map(|users| users.iter().cloned().collect())
                .unwrap_or_default();
            let mut published = Published {
                id: notification.id,
                online: Vec::new(),
                emailed: Vec::new(),
            };
            let mut jobs = Vec::new();
            for user in subscribers {
                let inbox = state.inboxes.entry(user.clone()).or_default();
                inbox.push_back(notification.clone());
                // La bandeja está acotada: se van las más viejas.
                while inbox.len() > MAX_INBOX {
                    inbox.pop_front();
                }
                let frame = ServerFrame::Notification {
                    notification: notification.clone(),
                };
                if state.online.contains_key(&user) {
                    state.send_to(&user, &frame);
                    published.online.push(user);
                } else {
                    jobs.push(EmailJob {
                        user: user.clone(),
                        notification: notification.clone(),
                    });
                    published.emailed.push(user);
                }
            }
            (published, jobs)
        };
        // El envío del e-mail es lento y puede fallar: no lo hacemos aquí, lo encolamos y el
        // worker lo hace aparte. Quien publica recibe su 202 al momento.
        let mut queue = self.inner.emails.clone();
        for job in jobs {
            queue
                .push(job)
                .await
                .map_err(|error| NotifyError::Queue(error.to_string()))?;
        }
        Ok(published)
    }
    // ANCHOR_END: publish

    // ANCHOR: connect
    /// Registra una conexión de `user`: desde ahora cuenta como conectado.
    pub fn connect(&self, user: &str) -> Connection {
        let (queue, frames) = mpsc::channel(QUEUE);
        let mut state = self.lock();
        state.next_connection += 1;
        let id = state.next_connection;
        state
            .online
            .entry(user.to_owned())
            .or_default()
            .insert(id, queue);
        Connection {
            notifier: self.clone(),
            user: user.to_owned(),
            id,
            frames,
        }
    }

    /// Olvida la conexión `id` de `user`; sin conexiones, el usuario pasa a desconectado.
    /// La llama el `Drop` de [`Connection`].
    fn disconnect(&self, user: &str, id: u64) {
        let mut state = self.lock();
        if let Some(connections) = state.online.get_mut(user) {
            connections.remove(&id);
            if connections.is_empty() {
                state.online.remove(user);
            }
        }
    }
    // ANCHOR_END: connect

    /// ¿Tiene `user` alguna conexión abierta?
    pub fn is_online(&self, user: &str) -> bool {
        self.lock().online.contains_key(user)
    }

    /// Las notificaciones de `user`, de la más vieja a la más nueva.
    pub fn notifications(&self, user: &str) -> Vec<Notification> {
        self.lock()
            .inboxes
            .get(user)
            .map(|inbox| inbox.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Cuántas notificaciones de `user` siguen sin leer.
    pub fn unread(&self, user: &str) -> usize {
        self.lock().unread(user)
    }

    // ANCHOR: mark_read
    /// Marca como leída la notificación `id` de `user` y avisa a todas sus conexiones del nuevo
    /// contador. Devuelve ese contador. Marcarla dos veces no es un error.
    pub fn mark_read(&self, user: &str, id: u64) -> Result<usize, NotifyError> {
        let mut state = self.lock();
        let notification = state
            .inboxes
            .get_mut(user)
            .and_then(|inbox| inbox.iter_mut().find(|n| n.id == id))
            // La de otro usuario tampoco existe para este: mismo 404, no revelamos nada.
            .ok_or(NotifyError::NotFound(id))?;
        notification.read = true;
        let count = state.unread(user);
        state.send_to(user, &ServerFrame::Unread { count });
        Ok(count)
    }
    // ANCHOR_END: mark_read
}

// ANCHOR: email
/// El job de e-mail: lo ejecuta el worker de apalis, con el [`Mailer`] que recibió con `.data`.
/// Devolver el error deja que apalis lo registre (y lo reintente si se configura).
pub async fn send_email(
    job: EmailJob,
    Data(SharedMailer(mailer)): Data<SharedMailer>,
) -> Result<(), MailError> {
    mailer.send(render_email(&job)).await
}

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
// ANCHOR_END: email

/// Crea la cola, arranca el worker y devuelve el sistema listo para [`app`]. Hay que llamarla
/// dentro de un runtime de Tokio.
pub fn start(mailer: Arc<dyn Mailer>) -> Notifier {
    let queue = EmailQueue::new();
    spawn_email_worker(queue.clone(), mailer);
    Notifier::new(queue)
}

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
pub async fn handle_socket(mut socket: WebSocket, notifier: Notifier, user: String) {
    // Primero registrarse y después saludar: cuando el cliente ve el saludo, ya está conectado
    // y no se pierde ninguna notificación.
    let mut connection = notifier.connect(&user);
    let welcome = ServerFrame::Welcome {
        unread: notifier.unread(&user),
        user,
    };
    if send_frame(&mut socket, &welcome).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = connection.frames.recv() => {
                let Some(frame) = frame else { break };
                if send_frame(&mut socket, &frame).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                let reply = match incoming {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientFrame>(&text) {
                        Ok(ClientFrame::Ping) => ServerFrame::Pong,
                        // Un frame mal formado no cierra la conexión: se contesta y se sigue.
                        Err(_) => ServerFrame::Error {
                            message: "frame no válido: se esperaba {\"type\":\"ping\"}".into(),
                        },
                    },
                    // Pings, pongs y binarios: nada que contestar.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => continue,
                    // Cierre, error o fin del stream: la conexión terminó.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if send_frame(&mut socket, &reply).await.is_err() {
                    break;
                }
            }
        }
    }
    // `connection` se suelta aquí: su `Drop` saca a esta pestaña de los conectados.
}
// ANCHOR_END: socket
