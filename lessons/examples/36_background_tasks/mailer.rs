//! Paso 2 · Encolar un e-mail y enviarlo de verdad, como archivo `.eml`.
//!
//! `POST /emails` no envía nada: valida, anota el trabajo como `pending`, lo deja en la cola y
//! contesta `202 Accepted` con la URL de su estado. El envío lo hace un worker (`worker.rs`) con
//! `lettre`, que escribe cada e-mail en la carpeta de salida (`outbox`): ábrelo con cualquier
//! cliente de correo, o con `cat`. En producción sería SMTP; el código del worker no cambia.
//!
//! Para ver fallar al mailer a propósito: un destinatario `@falla.test` falla siempre, y
//! `"fail_times": 2` hace fallar los dos primeros intentos.

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::AppState;

/// El dominio cuyo "servidor de correo" rechaza todo (`.test` está reservado: nunca existirá).
pub const FAILING_DOMAIN: &str = "@falla.test";

// ANCHOR: job
/// Lo que la cola guarda de cada e-mail. Es JSON: con Redis, esto es lo que verás en Redis.
///
/// El número de intento viaja en el trabajo: un reintento es encolar el mismo trabajo con
/// `attempt + 1`. Así la política de reintentos es la nuestra (ver `worker.rs`) y sobrevive
/// a reinicios.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailJob {
    /// Nuestro id, el mismo en todos los intentos.
    pub id: String,
    /// 1 en el primer intento.
    pub attempt: u32,
    pub to: String,
    pub subject: String,
    pub text: String,
    /// Cuántos intentos deben fallar a propósito (para ver los reintentos).
    #[serde(default)]
    pub fail_times: u32,
}
// ANCHOR_END: job

/// Escribe e-mails en la carpeta `outbox` con `AsyncFileTransport` (un `<uuid>.eml` cada uno).
pub struct Mailer {
    transport: AsyncFileTransport<Tokio1Executor>,
    outbox: PathBuf,
    from: Mailbox,
}

impl Mailer {
    /// Crea la carpeta si no existe.
    pub fn new(outbox: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&outbox).map_err(|error| {
            anyhow::anyhow!("no se pudo crear la carpeta {}: {error}", outbox.display())
        })?;
        Ok(Self {
            transport: AsyncFileTransport::new(&outbox),
            outbox,
            from: "Práctica 36 <practica36@localhost>".parse()?,
        })
    }

    // ANCHOR: mailer
    /// Un intento de envío. Devuelve la ruta del `.eml`, o por qué falló.
    pub async fn send(&self, job: &EmailJob) -> Result<PathBuf, String> {
        if job.to.ends_with(FAILING_DOMAIN) {
            return Err("el servidor de correo de falla.test rechazó el envío (simulado)".into());
        }
        if job.attempt <= job.fail_times {
            return Err(format!(
                "fallo simulado en el intento {} de los {} que deben fallar",
                job.attempt, job.fail_times
            ));
        }
        let to: Mailbox = job
            .to
            .parse()
            .map_err(|error| format!("destinatario no válido: {error}"))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(job.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(job.text.clone())
            .map_err(|error| format!("no se pudo construir el e-mail: {error}"))?;
        let id = self
            .transport
            .send(email)
            .await
            .map_err(|error| format!("no se pudo escribir el .eml: {error}"))?;
        Ok(self.outbox.join(format!("{id}.eml")))
    }
    // ANCHOR_END: mailer
}

/// El cuerpo de `POST /emails`.
#[derive(Deserialize)]
pub struct NewEmail {
    to: String,
    subject: String,
    text: String,
    #[serde(default)]
    fail_times: u32,
}

#[derive(Serialize)]
pub struct Accepted {
    id: String,
    status: &'static str,
    status_url: String,
}

// ANCHOR: enqueue
/// `POST /emails`: valida, registra `pending`, encola y contesta 202 sin esperar al envío.
pub async fn enqueue(
    State(state): State<AppState>,
    Json(email): Json<NewEmail>,
) -> Result<(StatusCode, Json<Accepted>), (StatusCode, String)> {
    // Lo que se puede comprobar ahora se comprueba ahora: un worker no debe descubrir un 422.
    if email.to.parse::<Mailbox>().is_err() {
        let refusal = format!("'{}' no es una dirección de e-mail", email.to);
        return Err((StatusCode::UNPROCESSABLE_ENTITY, refusal));
    }
    if email.subject.trim().is_empty() || email.subject.chars().count() > 200 {
        let refusal = "el asunto debe tener de 1 a 200 caracteres".to_owned();
        return Err((StatusCode::UNPROCESSABLE_ENTITY, refusal));
    }
    let job = EmailJob {
        id: uuid::Uuid::new_v4().to_string(),
        attempt: 1,
        to: email.to,
        subject: email.subject,
        text: email.text,
        fail_times: email.fail_times.min(10),
    };
    state.store.insert(&job.id, &job.to, &job.subject);
    let id = job.id.clone();
    if let Err(error) = state.queue.push(job, std::time::Duration::ZERO).await {
        tracing::error!(%error, "no se pudo encolar el e-mail");
        let status = super::status::JobStatus::Dead;
        state
            .store
            .transition(&id, status, 0, Some(error.clone()), None);
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cola no disponible: {error}"),
        ));
    }
    tracing::info!(job = %id, "e-mail encolado");
    let accepted = Accepted {
        status_url: format!("/jobs/{id}"),
        id,
        status: "pending",
    };
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
// ANCHOR_END: enqueue
