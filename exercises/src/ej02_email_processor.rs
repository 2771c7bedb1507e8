//! Ejercicio 2 · Procesador de e-mails en segundo plano
//!
//! Objetivo:        un servicio que acepta peticiones de e-mail por HTTP, responde en el acto
//!                  (`202 Accepted` con un id) y los envía después, en un worker de apalis:
//!                  renderiza la plantilla, llama al `Mailer`, reintenta los fallos temporales con
//!                  espera exponencial (*exponential backoff*) y deja consultar el estado.
//! Tiempo estimado: 2 h.
//! Sigue a:         la práctica 36, `cargo run --example 36_background_tasks` (la cola, el worker
//!                  y los reintentos). En FastAPI sería `BackgroundTasks` o Celery/ARQ.
//! Compruébalo:     cargo test -p exercises ej02
//!                  cargo run -p exercises --bin grade -- --ejercicio 2
//!
//! # La API HTTP
//!
//! - `POST /emails` con `{"to":"ana@example.com","template":"bienvenida","vars":{"nombre":"Ana",…}}`
//!   → `202 {"id":"…","status":"pending"}`. Si el destinatario no vale, la plantilla no existe o
//!   falta una variable: `422 {"error":"…"}`, y no se encola nada.
//! - `GET /emails/{id}` → `200 {"id":"…","status":"…","attempts":N,"last_error":…}`, o
//!   `404 {"error":"…"}` si el id no existe.
//!
//! Los estados: `pending` (en la cola, o esperando el siguiente intento), `running` (un intento en
//! curso), `done` (enviado) y `failed` (sin más intentos, o un error permanente).
//!
//! Ojo, dos diferencias con la práctica 36: allí `failed` quiere decir «falló y se reintentará» y
//! el estado final es `dead`; aquí solo hay cuatro estados, así que la espera de un reintento es
//! `pending` y `failed` es el final. Y allí cada reintento se vuelve a encolar con retraso; aquí,
//! para que sea más corto, `process` reintenta en un bucle dentro del mismo trabajo.
//!
//! # Las reglas que se comprueban (una comprobación cada una)
//!
//! Núcleo:
//! 1. POST /emails responde 202 con el id del trabajo y estado pending.
//! 2. rechaza con 422 una petición inválida y no encola nada (destinatario sin `@`, plantilla
//!    desconocida, variable que falta).
//! 3. el worker renderiza la plantilla y la envía por el Mailer (un snapshot del e-mail que
//!    recibe el `Mailer`: destinatario, asunto y cuerpo).
//! 4. GET /emails/{id} informa running mientras se envía y done al terminar.
//! 5. GET /emails/{id} responde 404 a un id desconocido.
//!
//! Calidad:
//! 6. backoff crece exponencialmente desde base_delay y se detiene en max_delay (`base`,
//!    `2·base`, `4·base`… sin pasar de `max_delay`, y sin pánico tras 1000 fallos).
//! 7. reintenta tras fallos temporales y termina en done (`attempts` cuenta los intentos).
//! 8. agota los intentos y deja el trabajo failed con el último error (`max_attempts` intentos
//!    en total, ni uno más).
//! 9. espera entre intentos lo que dice backoff, en estado pending (con `last_error`; se
//!    comprueba con el reloj pausado de tokio).
//! 10. un error permanente no se reintenta (`MailError::Permanent` → `failed` al primer intento).
//! 11. un envío que se cuelga cuenta como fallo al superar attempt_timeout.
//!
//! Integración:
//! 12. diez trabajos a la vez terminan done y cada destinatario recibe el suyo.
//! 13. un trabajo encolado desde código (sin HTTP) se consulta por HTTP (`Jobs::enqueue` es la
//!     misma puerta que usa el handler).
//!
//! Las comprobaciones crean el servicio con `Jobs::new(mailer_falso, politica)`, arrancan el
//! worker con `jobs.spawn_worker()` y sirven `app(jobs)`; el `Mailer` falso falla cuando se le
//! pide y apunta lo que recibe.
//!
//! # Por dónde empezar
//!
//! Primero la mitad HTTP, que no necesita worker: `render`, `Jobs::enqueue`, `create_email` y
//! `email_status` (reglas 1 y 5), y `backoff`, que es pura (regla 6). Después el worker:
//! `Jobs::spawn_worker`, `email_handler` y `Jobs::process` (el resto). Ejecuta
//! `cargo test -p exercises ej02` tras cada parte.
//!
//! Las pistas están al final del archivo.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use apalis_core::backend::dequeue::VecDequeBackend;
use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

// Lo que usarás al resolverlo (el `allow` evita el aviso mientras aún no lo usas).
#[allow(unused_imports)]
use {
    apalis::prelude::{TaskSink, WorkerBuilder},
    axum::http::StatusCode,
    axum::response::IntoResponse,
    serde_json::json,
};

/// Una plantilla: `{{nombre}}` marca dónde va la variable `nombre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    pub name: &'static str,
    pub subject: &'static str,
    pub body: &'static str,
}

/// Las plantillas que conoce el servicio.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "bienvenida",
        subject: "Te damos la bienvenida a {{curso}}, {{nombre}}",
        body: "Hola, {{nombre}}:\n\nTu plaza en {{curso}} está confirmada. Empezamos el {{fecha}}.\n\nUn saludo,\nel equipo del bootcamp\n",
    },
    Template {
        name: "recordatorio",
        subject: "Recordatorio: {{evento}}",
        body: "Hola, {{nombre}}:\n\nTe recordamos que {{evento}} es el {{fecha}}.\n",
    },
];

/// La plantilla llamada `name`, si existe.
pub fn find_template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|template| template.name == name)
}

/// El cuerpo de `POST /emails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailRequest {
    pub to: String,
    pub template: String,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// Un e-mail ya renderizado, listo para el `Mailer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("la plantilla «{0}» no existe")]
    UnknownTemplate(String),
    #[error("falta la variable «{0}»")]
    MissingVar(String),
    #[error("hay un «{{{{» sin su «}}}}»")]
    Unclosed,
}

// ANCHOR: render
/// Renderiza el e-mail de `request`: su plantilla con sus variables (`{{nombre}}` →
/// `vars["nombre"]`). Es una función pura, así que el handler la usa para validar (422) y el
/// worker para enviar.
pub fn render(request: &EmailRequest) -> Result<Email, RenderError> {
    // TODO: busca la plantilla con `find_template` (si no existe, `RenderError::UnknownTemplate`)
    // y sustituye cada `{{clave}}` del asunto y del cuerpo por su valor (si falta,
    // `RenderError::MissingVar(clave)`; un `{{` sin `}}` es `RenderError::Unclosed`).
    todo!("render: rellena el asunto y el cuerpo de la plantilla con las variables")
}
// ANCHOR_END: render

/// Una dirección razonable: `algo@dominio.tld`, sin espacios. (Validar e-mails de verdad es
/// imposible con una expresión; lo serio es mandar un enlace de confirmación.)
pub fn validate_address(to: &str) -> Result<(), String> {
    let valid = match to.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !to.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!("«{to}» no parece una dirección de e-mail"))
    }
}

// ANCHOR: mailer
/// Por qué falló un envío: lo temporal se reintenta, lo permanente no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// El servidor de correo no responde, está saturado… (SMTP 4xx): puede salir bien luego.
    #[error("fallo temporal: {0}")]
    Temporary(String),
    /// El buzón no existe, el mensaje es rechazado… (SMTP 5xx): reintentar no sirve.
    #[error("fallo permanente: {0}")]
    Permanent(String),
}

/// Quien envía los e-mails. En producción, `lettre` por SMTP; en las comprobaciones, uno falso
/// que falla cuando se le pide y apunta lo que recibe.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, email: &Email) -> Result<(), MailError>;
}
// ANCHOR_END: mailer

/// Un `Mailer` que solo escribe en el log: para probar el servicio a mano.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        tracing::info!(to = %email.to, subject = %email.subject, "e-mail enviado (simulado)");
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// En la cola, o esperando a su siguiente intento.
    Pending,
    /// Un intento en curso.
    Running,
    Done,
    /// Sin más intentos, o con un error permanente.
    Failed,
}

/// Lo que devuelve `GET /emails/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub status: JobStatus,
    /// Intentos empezados (0 mientras espera en la cola).
    pub attempts: u32,
    pub last_error: Option<String>,
}

// ANCHOR: retry
/// Cuántas veces y cada cuánto se reintenta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Intentos en total, el primero incluido.
    pub max_attempts: u32,
    /// La espera tras el primer fallo; cada fallo siguiente la dobla.
    pub base_delay: Duration,
    /// El techo de la espera.
    pub max_delay: Duration,
    /// Lo más que puede durar un intento: un `Mailer` colgado cuenta como fallo temporal.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// La espera tras el fallo número `failed_attempt` (1, 2, 3…): `base`, `2·base`, `4·base`…,
/// nunca más de `max_delay`. Pura: se comprueba sin reloj, y con ella no hay que esperar de verdad.
pub fn backoff(policy: &RetryPolicy, failed_attempt: u32) -> Duration {
    // TODO: `base_delay × 2^(failed_attempt − 1)`, como mucho `max_delay`. Con muchos fallos
    // 2^n no cabe en un u32: usa `checked_pow` y `Duration::saturating_mul`.
    todo!("backoff: base_delay × 2^(fallo − 1), con techo en max_delay")
}
// ANCHOR_END: retry

/// Lo que viaja por la cola: nuestro id (estable entre reintentos) y la petición.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailJob {
    pub id: String,
    pub request: EmailRequest,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("destinatario no válido: {0}")]
    InvalidAddress(String),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("la cola no acepta trabajos: {0}")]
    Queue(String),
}

// ANCHOR: jobs
/// El servicio de e-mails: la cola de apalis, el estado de cada trabajo, el mailer y la política
/// de reintentos. Es `Clone` (todo va en `Arc`), así lo comparten el handler HTTP y el worker.
#[derive(Clone)]
pub struct Jobs {
    records: Arc<Mutex<HashMap<String, JobRecord>>>,
    /// `VecDequeBackend` es `Clone` (la cola va en un `Arc`), así que el handler puede empujar
    /// mientras el worker saca; `MemoryStorage` no lo es.
    queue: VecDequeBackend<EmailJob>,
    mailer: Arc<dyn Mailer>,
    policy: RetryPolicy,
}

impl Jobs {
    pub fn new(mailer: Arc<dyn Mailer>, policy: RetryPolicy) -> Self {
        Self {
            records: Arc::default(),
            queue: VecDequeBackend::new(),
            mailer,
            policy,
        }
    }

    /// El estado del trabajo `id`, si existe.
    pub fn status(&self, id: &str) -> Option<JobRecord> {
        self.lock().get(id).cloned()
    }

    /// Cambia el registro del trabajo `id` (si existe) con el mutex cerrado un instante.
    fn update(&self, id: &str, change: impl FnOnce(&mut JobRecord)) {
        if let Some(record) = self.lock().get_mut(id) {
            change(record);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, JobRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Valida la petición, registra el trabajo como `pending` y lo empuja a la cola. Devuelve su id.
    pub async fn enqueue(&self, request: EmailRequest) -> Result<String, EnqueueError> {
        // TODO: `validate_address` y `render` (para responder 422 ahora, no fallar luego); un id
        // con `uuid::Uuid::new_v4().to_string()`; el `JobRecord` en `pending` ANTES de empujar
        // (con `self.lock().insert(...)`); y `self.queue.clone().push(EmailJob { … }).await`.
        todo!("Jobs::enqueue: valida, registra como pending y empuja el trabajo a la cola")
    }

    /// Ejecuta un trabajo hasta el final: cada intento con su límite de tiempo
    /// (`policy.attempt_timeout`), y entre intentos la espera de [`backoff`]. Devuelve el estado
    /// final (`done` o `failed`). La llama el worker; las comprobaciones, también directamente.
    /// Un `done` conserva el último error, si lo hubo: cuenta que hubo fallos antes del éxito.
    pub async fn process(&self, job: EmailJob) -> JobStatus {
        // TODO: renderiza; en un bucle: `running` con `attempts` = intento; `self.mailer.send`
        // dentro de `tokio::time::timeout`; éxito → `done`; `Permanent` → `failed`; temporal o
        // timeout → `failed` si era el último intento, si no `pending` con `last_error` y
        // `tokio::time::sleep(backoff(&self.policy, intento))`.
        todo!("Jobs::process: intentos con timeout, backoff entre ellos y el estado al día")
    }

    /// Arranca el worker de apalis que saca trabajos de la cola y llama a [`Jobs::process`].
    /// Su concurrencia no tiene límite (la de apalis por defecto): un envío lento no frena a los
    /// demás. Vive lo que viva el runtime, o hasta que se aborte el `JoinHandle`.
    pub fn spawn_worker(&self) -> tokio::task::JoinHandle<()> {
        // TODO: `WorkerBuilder::new("email-worker").backend(self.queue.clone())
        // .data(self.clone()).build(email_handler)`, y `tokio::spawn` de su `.run()`. Ojo:
        // `run()` devuelve un `Result`, y esta función un `JoinHandle<()>`: lanza un bloque
        // `async move { … }` que lo mire (regístralo con `tracing::error!` si es `Err`).
        todo!("Jobs::spawn_worker: construye el worker de apalis y lánzalo en una tarea")
    }
}
// ANCHOR_END: jobs

// ANCHOR: router
/// El handler de apalis: el trabajo y, con `Data`, el servicio que registraste en el worker.
async fn email_handler(job: EmailJob, jobs: Data<Jobs>) -> Result<(), BoxDynError> {
    // TODO: `jobs.process(job).await`; el resultado ya queda en el estado: devuelve `Ok(())`.
    todo!("email_handler: procesa el trabajo")
}

/// Las rutas del servicio sobre `jobs` (arranca el worker aparte, con [`Jobs::spawn_worker`]).
pub fn app(jobs: Jobs) -> Router {
    Router::new()
        .route("/emails", post(create_email))
        .route("/emails/{id}", get(email_status))
        .with_state(jobs)
}

/// `POST /emails`: 202 con el id, porque el trabajo se hará después; 422 si la petición no vale.
pub async fn create_email(State(jobs): State<Jobs>, Json(request): Json<EmailRequest>) -> Response {
    // TODO: `jobs.enqueue(request).await`: `Ok(id)` → `(StatusCode::ACCEPTED, Json(json!({"id":
    // id, "status": JobStatus::Pending})))`; `EnqueueError::Queue` → 503; el resto → 422; los
    // errores con `Json(json!({"error": error.to_string()}))`.
    todo!("create_email: encola y responde 202, o 422 si la petición no vale")
}

/// `GET /emails/{id}`: el registro del trabajo, o 404.
pub async fn email_status(State(jobs): State<Jobs>, Path(id): Path<String>) -> Response {
    // TODO: `jobs.status(&id)`: `Some(record)` → `Json(record)`; `None` → 404 con `{"error": …}`.
    todo!("email_status: el registro del trabajo, o 404")
}
// ANCHOR_END: router

// Pista 1 (la idea)
// -----------------
// El handler HTTP no envía nada: valida, apunta el trabajo como `pending`, lo deja en la cola y
// responde 202 enseguida. El worker de apalis saca trabajos de esa misma cola (`VecDequeBackend`
// es `Clone`, y sus clones comparten la cola) y llama a `process`. `process` es un bucle de
// intentos: antes de cada uno el estado pasa a `running`; si falla de forma temporal y quedan
// intentos, vuelve a `pending`, guarda el error y espera `backoff(...)`. Como `backoff` es una
// función pura, se comprueba sin reloj; y como la espera es `tokio::time::sleep`, con el reloj
// pausado de tokio (`tokio::time::pause()`) un test recorre minutos de reintentos al instante.
//
// Pista 2 (la API)
// ----------------
// - `TaskSink` (ya importado) da `push(job).await` a la cola; necesita `mut`:
//   `let mut queue = self.queue.clone();`.
// - `WorkerBuilder::new(nombre).backend(cola).data(valor).build(handler)` crea el worker;
//   `worker.run().await` lo ejecuta (con `VecDequeBackend`, para siempre: lánzalo con
//   `tokio::spawn`). `run()` da un `Result`, así que `tokio::spawn(worker.run())` sería un
//   `JoinHandle<Result<…>>`, no el `JoinHandle<()>` que devuelve `spawn_worker`:
//   `tokio::spawn(async move { if let Err(error) = worker.run().await { … } })`.
//   En el handler, `Data<Jobs>` te da el `Jobs` registrado con `.data(...)` (como `&Jobs`).
// - `tokio::time::timeout(d, fut).await` da `Err(_)` si `fut` tarda más de `d`.
// - `Ok(Err(error @ MailError::Permanent(_)))` empareja y da nombre al error a la vez.
// - `self.update(&id, |record| { record.status = JobStatus::Running; record.attempts = n; })`
//   cambia el registro sin que tengas que tocar el mutex.
// - Para `render`: `rest.find("{{")`, `after.find("}}")` y `&rest[..i]` recorren la plantilla.
//
// Pista 3 (casi el código)
// ------------------------
// ```rust
// let email = match render(&job.request) { Ok(email) => email, Err(e) => { /* failed */ } };
// let mut attempt = 0;
// loop {
//     attempt += 1;
//     self.update(&job.id, |r| { r.status = JobStatus::Running; r.attempts = attempt; });
//     let sent = tokio::time::timeout(self.policy.attempt_timeout, self.mailer.send(&email));
//     let error = match sent.await {
//         Ok(Ok(())) => { /* done */ return JobStatus::Done; }
//         Ok(Err(error @ MailError::Permanent(_))) => { /* failed con error.to_string() */ }
//         Ok(Err(error)) => error.to_string(),
//         Err(_) => "el envío tardó demasiado".to_owned(),
//     };
//     if attempt >= self.policy.max_attempts { /* failed con error */ }
//     self.update(&job.id, |r| { r.status = JobStatus::Pending; r.last_error = Some(error); });
//     tokio::time::sleep(backoff(&self.policy, attempt)).await;
// }
// ```
