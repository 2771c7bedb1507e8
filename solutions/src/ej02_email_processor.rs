//! Ejercicio 2 · Procesador de e-mails en segundo plano (solución de referencia).
//!
//! El enunciado, las reglas y las pistas están en `exercises/src/ej02_email_processor.rs`; aquí
//! está resuelto y comentado. Sigue la práctica 36 (`cargo run --example 36_background_tasks`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data, TaskSink, WorkerBuilder};
use apalis_core::backend::dequeue::VecDequeBackend;
use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

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

/// Sustituye cada `{{clave}}` de `text` por `vars[clave]`.
fn fill(text: &str, vars: &BTreeMap<String, String>) -> Result<String, RenderError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(RenderError::Unclosed)?;
        let key = after[..end].trim();
        let value = vars
            .get(key)
            .ok_or_else(|| RenderError::MissingVar(key.to_owned()))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renderiza el e-mail de `request`: su plantilla con sus variables. Es una función pura, así que
/// el handler la usa para validar (y responder 422) y el worker para enviar.
pub fn render(request: &EmailRequest) -> Result<Email, RenderError> {
    let template = find_template(&request.template)
        .ok_or_else(|| RenderError::UnknownTemplate(request.template.clone()))?;
    Ok(Email {
        to: request.to.clone(),
        subject: fill(template.subject, &request.vars)?,
        body: fill(template.body, &request.vars)?,
    })
}

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

// ANCHOR: backoff
/// La espera tras el fallo número `failed_attempt` (1, 2, 3…): `base`, `2·base`, `4·base`…,
/// nunca más de `max_delay`. Pura: se comprueba sin reloj, y con ella no hay que esperar de verdad.
pub fn backoff(policy: &RetryPolicy, failed_attempt: u32) -> Duration {
    // `checked_pow`/`saturating_mul`: con muchos fallos, 2^n no cabe en un u32 y no queremos un pánico.
    let factor = 2u32
        .checked_pow(failed_attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay)
}
// ANCHOR_END: backoff

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

    // ANCHOR: enqueue
    /// Valida la petición, registra el trabajo como `pending` y lo empuja a la cola. Devuelve su id.
    pub async fn enqueue(&self, request: EmailRequest) -> Result<String, EnqueueError> {
        validate_address(&request.to).map_err(EnqueueError::InvalidAddress)?;
        // Renderizar es puro y barato: así una variable que falta es un 422 ahora y no un
        // trabajo que falla después, cuando ya nadie mira la respuesta.
        render(&request)?;
        let id = uuid::Uuid::new_v4().to_string();
        // Primero el registro y después la cola: el worker nunca ve un trabajo sin registro.
        self.lock().insert(
            id.clone(),
            JobRecord {
                id: id.clone(),
                status: JobStatus::Pending,
                attempts: 0,
                last_error: None,
            },
        );
        let job = EmailJob {
            id: id.clone(),
            request,
        };
        let mut queue = self.queue.clone();
        if let Err(error) = queue.push(job).await {
            self.lock().remove(&id);
            return Err(EnqueueError::Queue(error.to_string()));
        }
        Ok(id)
    }
    // ANCHOR_END: enqueue

    // ANCHOR: process
    /// Ejecuta un trabajo hasta el final: cada intento con su límite de tiempo, y entre intentos
    /// la espera de [`backoff`]. Devuelve el estado final (`done` o `failed`).
    ///
    /// Los reintentos son nuestros, no de apalis: el estado que ve el cliente y las esperas son
    /// exactamente los de la política. (El worker queda ocupado durante la espera; el proyecto
    /// final y la práctica 36 reencolan el trabajo con retraso para no ocuparlo: ver
    /// `project/src/jobs/worker.rs`.)
    pub async fn process(&self, job: EmailJob) -> JobStatus {
        let email = match render(&job.request) {
            Ok(email) => email,
            Err(error) => return self.finish(&job.id, JobStatus::Failed, Some(error.to_string())),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.update(&job.id, |record| {
                record.status = JobStatus::Running;
                record.attempts = attempt;
            });
            let sent = tokio::time::timeout(self.policy.attempt_timeout, self.mailer.send(&email));
            let error = match sent.await {
                Ok(Ok(())) => return self.finish(&job.id, JobStatus::Done, None),
                // Reintentar no arreglaría nada: termina ya.
                Ok(Err(error @ MailError::Permanent(_))) => {
                    return self.finish(&job.id, JobStatus::Failed, Some(error.to_string()));
                }
                Ok(Err(error @ MailError::Temporary(_))) => error.to_string(),
                Err(_) => format!(
                    "el envío superó {} ms",
                    self.policy.attempt_timeout.as_millis()
                ),
            };
            if attempt >= self.policy.max_attempts {
                return self.finish(&job.id, JobStatus::Failed, Some(error));
            }
            let delay = backoff(&self.policy, attempt);
            tracing::warn!(id = %job.id, attempt, %error, retry_in = ?delay, "falló el envío; se reintentará");
            self.update(&job.id, |record| {
                record.status = JobStatus::Pending;
                record.last_error = Some(error);
            });
            tokio::time::sleep(delay).await;
        }
    }

    /// Deja el trabajo en su estado final. Un `done` conserva el último error: cuenta que hubo
    /// fallos antes del éxito.
    fn finish(&self, id: &str, status: JobStatus, error: Option<String>) -> JobStatus {
        self.update(id, |record| {
            record.status = status;
            if error.is_some() {
                record.last_error = error;
            }
        });
        status
    }
    // ANCHOR_END: process

    // ANCHOR: worker
    /// Arranca el worker de apalis que saca trabajos de la cola y llama a [`Jobs::process`].
    /// Su concurrencia no tiene límite (la de apalis por defecto): un envío lento no frena a los
    /// demás. Vive lo que viva el runtime, o hasta que se aborte el `JoinHandle`.
    pub fn spawn_worker(&self) -> tokio::task::JoinHandle<()> {
        let worker = WorkerBuilder::new("email-worker")
            .backend(self.queue.clone())
            .data(self.clone())
            .build(email_handler);
        tokio::spawn(async move {
            if let Err(error) = worker.run().await {
                tracing::error!(%error, "el worker de e-mails se detuvo");
            }
        })
    }
    // ANCHOR_END: worker
}

// ANCHOR: handler
/// El handler de apalis: el trabajo y, con `Data`, el servicio que registramos en el worker.
async fn email_handler(job: EmailJob, jobs: Data<Jobs>) -> Result<(), BoxDynError> {
    // `process` registra el resultado en el estado: para apalis, el trabajo siempre termina bien.
    jobs.process(job).await;
    Ok(())
}
// ANCHOR_END: handler

/// Las rutas del servicio sobre `jobs` (arranca el worker aparte, con [`Jobs::spawn_worker`]).
pub fn app(jobs: Jobs) -> Router {
    Router::new()
        .route("/emails", post(create_email))
        .route("/emails/{id}", get(email_status))
        .with_state(jobs)
}

/// `POST /emails`: 202 con el id, porque el trabajo se hará después; 422 si la petición no vale.
pub async fn create_email(State(jobs): State<Jobs>, Json(request): Json<EmailRequest>) -> Response {
    match jobs.enqueue(request).await {
        Ok(id) => (
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "status": JobStatus::Pending})),
        )
            .into_response(),
        Err(error @ EnqueueError::Queue(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
        Err(error) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

/// `GET /emails/{id}`: el registro del trabajo, o 404.
pub async fn email_status(State(jobs): State<Jobs>, Path(id): Path<String>) -> Response {
    match jobs.status(&id) {
        Some(record) => Json(record).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no hay ningún trabajo con id «{id}»")})),
        )
            .into_response(),
    }
}
