//! Las comprobaciones del ejercicio 2 (procesador de e-mails), en el orden de las reglas de
//! `exercises/src/ej02_email_processor.rs`.
//!
//! The HTTP checks serve `app(jobs)` on 127.0.0.1 port 0 with a real worker and tiny retry
//! delays (a few milliseconds). The timing checks (rules 9 and 11) call `Jobs::process` directly
//! under tokio's paused clock, where no socket is awaited, so minutes of backoff take no time and
//! the waits are exact. Every check injects a fake `Mailer` that fails as scripted and records
//! what it got.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::registry::{Block, Check, Failure};
use super::support::{self, Server};
use crate::ej02_email_processor::{
    self as emails, Email, EmailJob, EmailRequest, JobStatus, Jobs, MailError, Mailer, RetryPolicy,
};

const COLA: &str = "Cola de trabajos y 202";
const PLANTILLA: &str = "Plantilla y envío";
const ESTADO: &str = "Estado del trabajo";
const REINTENTOS: &str = "Reintentos con backoff";
const WORKER: &str = "Worker y reutilización";

const TIMEOUT: Duration = Duration::from_secs(8);

pub fn checks() -> Vec<Check> {
    let check = |block, criterion, points, title, run| Check {
        exercise: 2,
        block,
        criterion,
        points,
        title,
        timeout: TIMEOUT,
        run,
    };
    vec![
        check(
            Block::Nucleo,
            COLA,
            3,
            "POST /emails responde 202 con el id del trabajo y estado pending",
            |_| Box::pin(accepts_with_202()),
        ),
        check(
            Block::Nucleo,
            COLA,
            2,
            "rechaza con 422 una petición inválida y no encola nada",
            |_| Box::pin(rejects_invalid_requests()),
        ),
        check(
            Block::Nucleo,
            PLANTILLA,
            3,
            "el worker renderiza la plantilla y la envía por el Mailer",
            |_| Box::pin(renders_and_sends()),
        ),
        check(
            Block::Nucleo,
            ESTADO,
            3,
            "GET /emails/{id} informa running mientras se envía y done al terminar",
            |_| Box::pin(reports_running_then_done()),
        ),
        check(
            Block::Nucleo,
            ESTADO,
            1,
            "GET /emails/{id} responde 404 a un id desconocido",
            |_| Box::pin(unknown_id_is_404()),
        ),
        check(
            Block::Calidad,
            REINTENTOS,
            2,
            "backoff crece exponencialmente desde base_delay y se detiene en max_delay",
            |_| Box::pin(backoff_is_exponential_and_capped()),
        ),
        check(
            Block::Calidad,
            REINTENTOS,
            2,
            "reintenta tras fallos temporales y termina en done",
            |_| Box::pin(retries_until_done()),
        ),
        check(
            Block::Calidad,
            REINTENTOS,
            2,
            "agota los intentos y deja el trabajo failed con el último error",
            |_| Box::pin(gives_up_after_max_attempts()),
        ),
        check(
            Block::Calidad,
            REINTENTOS,
            2,
            "espera entre intentos lo que dice backoff, en estado pending",
            |_| Box::pin(waits_the_backoff_between_attempts()),
        ),
        check(
            Block::Calidad,
            REINTENTOS,
            1,
            "un error permanente no se reintenta",
            |_| Box::pin(permanent_errors_are_not_retried()),
        ),
        check(
            Block::Calidad,
            REINTENTOS,
            1,
            "un envío que se cuelga cuenta como fallo al superar attempt_timeout",
            |_| Box::pin(hung_send_times_out()),
        ),
        check(
            Block::Integracion,
            WORKER,
            1,
            "diez trabajos a la vez terminan done y cada destinatario recibe el suyo",
            |_| Box::pin(ten_jobs_each_to_its_recipient()),
        ),
        check(
            Block::Integracion,
            WORKER,
            1,
            "un trabajo encolado desde código (sin HTTP) se consulta por HTTP",
            |_| Box::pin(enqueued_from_code_is_visible_over_http()),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The fake mailer

/// What the fake mailer does on one call; calls past the script succeed.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `MailError::Temporary`.
    Fail,
    /// `MailError::Permanent`.
    Reject,
    /// Never answers.
    Hang,
    /// Waits until the check opens the gate, then succeeds.
    Gate,
}

const TEMPORARY: &str = "el servidor SMTP no responde (mailer de prueba)";
const PERMANENT: &str = "550 el buzón no existe (mailer de prueba)";

struct FakeMailer {
    script: Mutex<VecDeque<Step>>,
    calls: Mutex<Vec<(Instant, Email)>>,
    entered: mpsc::UnboundedSender<Email>,
    gate: Semaphore,
}

impl FakeMailer {
    fn new(script: &[Step]) -> (Arc<Self>, mpsc::UnboundedReceiver<Email>) {
        let (entered, calls) = mpsc::unbounded_channel();
        let mailer = Self {
            script: Mutex::new(script.iter().copied().collect()),
            calls: Mutex::default(),
            entered,
            gate: Semaphore::new(0),
        };
        (Arc::new(mailer), calls)
    }

    fn calls(&self) -> Vec<(Instant, Email)> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn emails(&self) -> Vec<Email> {
        self.calls().into_iter().map(|(_, email)| email).collect()
    }
}

#[async_trait]
impl Mailer for FakeMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((Instant::now(), email.clone()));
        let step = self
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        let _ = self.entered.send(email.clone());
        match step {
            None => Ok(()),
            Some(Step::Fail) => Err(MailError::Temporary(TEMPORARY.to_owned())),
            Some(Step::Reject) => Err(MailError::Permanent(PERMANENT.to_owned())),
            Some(Step::Hang) => std::future::pending().await,
            Some(Step::Gate) => match self.gate.acquire().await {
                Ok(_permit) => Ok(()),
                Err(_) => Err(MailError::Temporary("la puerta se cerró".to_owned())),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Tiny delays for the checks over real sockets: three attempts within ~15 ms.
const FAST: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: Duration::from_millis(5),
    max_delay: Duration::from_millis(20),
    attempt_timeout: Duration::from_secs(2),
};

fn welcome(to: &str, name: &str) -> Value {
    json!({
        "to": to,
        "template": "bienvenida",
        "vars": {"nombre": name, "curso": "Rust para backend", "fecha": "lunes 7 de diciembre"},
    })
}

fn request(value: &Value) -> Result<EmailRequest, Failure> {
    serde_json::from_value(value.clone()).map_err(|error| {
        Failure::new("la petición de prueba no es un EmailRequest").got(error.to_string())
    })
}

/// The service with `mailer`, its worker running (when `worker`), served on port 0.
async fn service(
    mailer: &Arc<FakeMailer>,
    policy: RetryPolicy,
    worker: bool,
) -> Result<(Server, Jobs), Failure> {
    let jobs = Jobs::new(mailer.clone(), policy);
    if worker {
        let _worker = jobs.spawn_worker();
    }
    let server = support::serve(emails::app(jobs.clone())).await?;
    Ok((server, jobs))
}

async fn call(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<(StatusCode, Value), Failure> {
    let response = request.send().await.map_err(|error| {
        Failure::new(format!("{what} no obtuvo respuesta"))
            .got(error.to_string())
            .hint("¿El handler entra en pánico (un `todo!()`) o no termina?")
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

async fn post_email(server: &Server, body: &Value) -> Result<(StatusCode, Value), Failure> {
    call(
        support::http().post(server.url("/emails")).json(body),
        "POST /emails",
    )
    .await
}

async fn get_job(server: &Server, id: &str) -> Result<(StatusCode, Value), Failure> {
    call(
        support::http().get(server.url(&format!("/emails/{id}"))),
        "GET /emails/{id}",
    )
    .await
}

/// POSTs `body`, requires a 202 and returns the job id.
async fn accepted(server: &Server, body: &Value) -> Result<String, Failure> {
    let (status, reply) = post_email(server, body).await?;
    match reply["id"].as_str() {
        // Only rule 1 insists on 202: the other checks go on with any success that brings an id.
        Some(id) if status.is_success() && !id.is_empty() => Ok(id.to_owned()),
        _ => Err(Failure::new("POST /emails no aceptó una petición válida")
            .expected("202 {\"id\":\"…\",\"status\":\"pending\"}")
            .got(format!("{status} {reply}"))
            .hint("`create_email` llama a `jobs.enqueue` y responde `StatusCode::ACCEPTED` con el id.")),
    }
}

/// Polls `GET /emails/{id}` until the job is `done` or `failed` (bounded by [`support::WAIT`]).
async fn wait_final(server: &Server, id: &str) -> Result<Value, Failure> {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let (status, record) = get_job(server, id).await?;
        if status == StatusCode::OK && (record["status"] == "done" || record["status"] == "failed")
        {
            return Ok(record);
        }
        if tokio::time::Instant::now() >= deadline {
            // Whether the worker ever started the job tells which half is missing.
            let hint = if status == StatusCode::OK && record["attempts"].as_u64().unwrap_or(0) > 0 {
                "El worker sí empezó el trabajo (attempts ≥ 1), pero el estado no llegó a done ni failed: antes de cada `return` de `process`, guarda el estado final con `self.update(...)`; y ¿cada intento tiene su `tokio::time::timeout`?"
            } else {
                "El trabajo sigue como recién encolado: ¿arrancas el worker en `spawn_worker` (`tokio::spawn`) sobre la MISMA cola (`self.queue.clone()`), y su handler llama a `process`? ¿Guardas el `JobRecord` ANTES del `push`? Si lo guardas después, el worker actualiza un registro que aún no existe y tu `insert` lo deja otra vez en pending."
            };
            return Err(Failure::new(format!(
                "el trabajo no terminó en {} s",
                support::WAIT.as_secs()
            ))
            .expected("status done o failed")
            .got(format!("{status} {record}"))
            .hint(hint));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for the fake mailer's next call.
async fn next_call(calls: &mut mpsc::UnboundedReceiver<Email>) -> Result<Email, Failure> {
    match tokio::time::timeout(support::WAIT, calls.recv()).await {
        Ok(Some(email)) => Ok(email),
        _ => Err(Failure::new(format!("el Mailer no recibió ningún e-mail en {} s", support::WAIT.as_secs()))
            .hint("El worker saca el trabajo de la cola y `process` llama a `self.mailer.send(&email)`. ¿Lanzaste el worker con `tokio::spawn` (un `async move` que espera `worker.run()`)?")),
    }
}

fn expect_field(
    record: &Value,
    field: &str,
    want: &Value,
    what: &str,
    hint: &str,
) -> Result<(), Failure> {
    if &record[field] == want {
        Ok(())
    } else {
        Err(Failure::new(what.to_owned())
            .expected(format!("\"{field}\": {want}"))
            .got(record.to_string())
            .hint(hint.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------------
// Núcleo

async fn accepts_with_202() -> Result<(), Failure> {
    let (mailer, _calls) = FakeMailer::new(&[]);
    // No worker: the job must stay exactly as the handler left it.
    let (server, _jobs) = service(&mailer, FAST, false).await?;
    let (status, reply) = post_email(&server, &welcome("ana@example.com", "Ana")).await?;
    if status != StatusCode::ACCEPTED {
        return Err(Failure::new("POST /emails no respondió 202 Accepted")
            .expected("202: el trabajo queda en la cola y se hará después")
            .got(format!("{status} {reply}"))
            .hint("Devuelve `(StatusCode::ACCEPTED, Json(...))`: 200 diría que ya está enviado."));
    }
    let Some(id) = reply["id"].as_str().filter(|id| !id.is_empty()) else {
        return Err(Failure::new("la respuesta 202 no trae el id del trabajo")
            .expected("{\"id\":\"…\",\"status\":\"pending\"}")
            .got(reply.to_string())
            .hint("Responde `json!({\"id\": id, \"status\": JobStatus::Pending})`."));
    };
    expect_field(
        &reply,
        "status",
        &json!("pending"),
        "la respuesta 202 no dice pending",
        "El trabajo acaba de entrar en la cola: su estado es pending.",
    )?;
    let (status, record) = get_job(&server, id).await?;
    let expected = json!({"id": id, "status": "pending", "attempts": 0, "last_error": null});
    if status != StatusCode::OK || record != expected {
        return Err(Failure::new("el trabajo recién encolado no se consulta como pending")
            .expected(format!("200 {expected} (sin worker, nadie lo ha empezado)"))
            .got(format!("{status} {record}"))
            .hint("`enqueue` inserta el `JobRecord` en pending con 0 intentos ANTES de empujarlo a la cola."));
    }
    Ok(())
}

async fn rejects_invalid_requests() -> Result<(), Failure> {
    let (mailer, _calls) = FakeMailer::new(&[]);
    let (server, _jobs) = service(&mailer, FAST, true).await?;
    let mut missing_var = welcome("ana@example.com", "Ana");
    if let Some(vars) = missing_var["vars"].as_object_mut() {
        vars.remove("curso");
    }
    let cases = [
        ("un destinatario sin @", welcome("ana.example.com", "Ana")),
        (
            "una plantilla que no existe",
            json!({"to": "ana@example.com", "template": "despedida", "vars": {}}),
        ),
        ("una variable que falta (curso)", missing_var),
    ];
    for (case, body) in &cases {
        let (status, reply) = post_email(&server, body).await?;
        if status != StatusCode::UNPROCESSABLE_ENTITY || !reply["error"].is_string() {
            return Err(Failure::new(format!("con {case} la respuesta no fue 422"))
                .expected("422 {\"error\":\"…\"}")
                .got(format!("{status} {reply}"))
                .hint("`enqueue` valida con `validate_address` y `render` antes de encolar; `create_email` convierte ese error en 422."));
        }
    }
    // Sentinel: a valid job after the invalid ones; when it is done, the mailer must have seen only it.
    let id = accepted(&server, &welcome("bea@example.com", "Bea")).await?;
    wait_final(&server, &id).await?;
    let sent: Vec<String> = mailer.emails().into_iter().map(|email| email.to).collect();
    if sent != ["bea@example.com"] {
        return Err(Failure::new("se envió algo de una petición rechazada")
            .expected("solo el e-mail válido, a bea@example.com")
            .got(format!("{sent:?}"))
            .hint("Valida ANTES de insertar el registro y de empujar a la cola: un 422 no deja nada detrás."));
    }
    Ok(())
}

async fn renders_and_sends() -> Result<(), Failure> {
    let (mailer, mut calls) = FakeMailer::new(&[]);
    let (server, _jobs) = service(&mailer, FAST, true).await?;
    let id = accepted(&server, &welcome("ana@example.com", "Ana")).await?;
    let email = next_call(&mut calls).await?;
    let record = wait_final(&server, &id).await?;
    expect_field(
        &record,
        "status",
        &json!("done"),
        "el envío no terminó en done",
        "Si el `Mailer` devuelve `Ok(())`, el trabajo pasa a done.",
    )?;
    let value = serde_json::to_value(&email).unwrap_or_default();
    support::snapshot(
        "ej02_email_renderizado",
        &value,
        "Sustituye cada `{{clave}}` del asunto y del cuerpo de la plantilla por `vars[clave]`, sin tocar el resto del texto (saltos de línea incluidos).",
    )
}

async fn reports_running_then_done() -> Result<(), Failure> {
    let (mailer, mut calls) = FakeMailer::new(&[Step::Gate]);
    let (server, _jobs) = service(&mailer, FAST, true).await?;
    let id = accepted(&server, &welcome("ana@example.com", "Ana")).await?;
    // The fake mailer is now holding the attempt open until we open the gate.
    next_call(&mut calls).await?;
    let (status, record) = get_job(&server, &id).await?;
    if status != StatusCode::OK || record["status"] != "running" || record["attempts"] != 1 {
        return Err(Failure::new("mientras el Mailer envía, el trabajo no está running")
            .expected("200 {\"status\":\"running\",\"attempts\":1,…}")
            .got(format!("{status} {record}"))
            .hint("Antes de llamar a `self.mailer.send`, pon `status = Running` y `attempts = intento` con `self.update`."));
    }
    mailer.gate.add_permits(1);
    let record = wait_final(&server, &id).await?;
    let expected = json!({"id": id, "status": "done", "attempts": 1, "last_error": null});
    if record != expected {
        return Err(Failure::new("tras enviarse, el trabajo no quedó done")
            .expected(expected.to_string())
            .got(record.to_string())
            .hint(
                "Cuando `send` devuelve `Ok(())`, pon `status = Done` (y no toques `attempts`).",
            ));
    }
    Ok(())
}

async fn unknown_id_is_404() -> Result<(), Failure> {
    let (mailer, _calls) = FakeMailer::new(&[]);
    let (server, _jobs) = service(&mailer, FAST, false).await?;
    let (status, reply) = get_job(&server, "no-existe").await?;
    if status != StatusCode::NOT_FOUND || !reply["error"].is_string() {
        return Err(Failure::new("un id desconocido no respondió 404")
            .expected("404 {\"error\":\"…\"}")
            .got(format!("{status} {reply}"))
            .hint("`jobs.status(&id)` devuelve `None`: responde `(StatusCode::NOT_FOUND, Json(json!({\"error\": …})))`."));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Calidad

/// Calls `backoff`, turning its panic (an overflow, usually) into a failure that names the case.
fn backoff_of(policy: &RetryPolicy, failed_attempt: u32) -> Result<Duration, Failure> {
    std::panic::catch_unwind(|| emails::backoff(policy, failed_attempt)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let failure = Failure::new(format!(
            "backoff(política, {failed_attempt}) entró en pánico"
        ))
        .expected(format!(
            "una espera entre {:?} y {:?}, sin pánico",
            policy.base_delay, policy.max_delay
        ));
        if message.starts_with("not yet implemented") {
            failure.hint("Resuelve el `todo!()` de `backoff`: su TODO dice cómo.")
        } else {
            failure.hint("Con muchos fallos, 2^(n−1) no cabe en un u32 (y `Duration * u32` también desborda): usa `2u32.checked_pow(n − 1)` (si da `None`, la espera es `max_delay`) y `base_delay.saturating_mul(...)`, como dice el TODO.")
        }
    })
}

async fn backoff_is_exponential_and_capped() -> Result<(), Failure> {
    let ms = Duration::from_millis;
    let policy = RetryPolicy {
        max_attempts: 10,
        base_delay: ms(100),
        max_delay: ms(1000),
        attempt_timeout: Duration::from_secs(1),
    };
    let got = (1..=6)
        .map(|n| backoff_of(&policy, n))
        .collect::<Result<Vec<Duration>, Failure>>()?;
    let want = [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)];
    if got != want {
        return Err(Failure::new("backoff no da base, 2·base, 4·base… con techo")
            .expected(format!("{want:?} (base 100 ms, techo 1 s, fallos 1 a 6)"))
            .got(format!("{got:?}"))
            .hint("El fallo 1 espera `base_delay` (2^0); el n, `base_delay × 2^(n−1)`; y nunca más de `max_delay`."));
    }
    let slow = RetryPolicy {
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        ..policy
    };
    let got = [backoff_of(&slow, 3)?, backoff_of(&slow, 1000)?];
    let want = [Duration::from_secs(4), Duration::from_secs(60)];
    if got != want {
        return Err(Failure::new("backoff no respeta la política que recibe")
            .expected(format!("{want:?} (base 1 s, techo 60 s, fallos 3 y 1000)"))
            .got(format!("{got:?}"))
            .hint("Usa `policy.base_delay` y `policy.max_delay`; con 1000 fallos, `checked_pow` da `None`: usa el techo."));
    }
    Ok(())
}

async fn retries_until_done() -> Result<(), Failure> {
    let (mailer, _calls) = FakeMailer::new(&[Step::Fail, Step::Fail]);
    let (server, _jobs) = service(&mailer, FAST, true).await?;
    let id = accepted(&server, &welcome("ana@example.com", "Ana")).await?;
    let record = wait_final(&server, &id).await?;
    if record["status"] != "done" || record["attempts"] != 3 {
        return Err(Failure::new("dos fallos temporales y un éxito no acabaron en done con 3 intentos")
            .expected("{\"status\":\"done\",\"attempts\":3,…} (max_attempts = 3)")
            .got(record.to_string())
            .hint("Un `MailError::Temporary` con intentos por delante: `pending`, espera `backoff` y vuelve a intentarlo."));
    }
    let calls = mailer.calls().len();
    if calls != 3 {
        return Err(Failure::new("el Mailer no recibió exactamente 3 intentos")
            .expected("3")
            .got(calls.to_string())
            .hint("Un intento = una llamada a `send`."));
    }
    Ok(())
}

async fn gives_up_after_max_attempts() -> Result<(), Failure> {
    let (mailer, _calls) = FakeMailer::new(&[Step::Fail; 6]);
    let (server, _jobs) = service(&mailer, FAST, true).await?;
    let id = accepted(&server, &welcome("ana@example.com", "Ana")).await?;
    let record = wait_final(&server, &id).await?;
    let calls = mailer.calls().len();
    let error = record["last_error"].as_str().unwrap_or_default();
    if record["status"] != "failed" || record["attempts"] != 3 || calls != 3 {
        return Err(Failure::new("con fallos sin fin, el trabajo no acabó failed tras max_attempts intentos")
            .expected("{\"status\":\"failed\",\"attempts\":3,…} y 3 llamadas al Mailer (max_attempts = 3)")
            .got(format!("{record} y {calls} llamadas"))
            .hint("Cuenta los intentos empezando en 1: si `intento >= max_attempts`, deja `failed` y sal del bucle."));
    }
    if !error.contains(TEMPORARY) {
        return Err(Failure::new("el trabajo failed no guarda el último error del Mailer")
            .expected(format!("last_error que contenga «{TEMPORARY}»"))
            .got(record.to_string())
            .hint("Guarda `error.to_string()` en `last_error`: es lo que un operador necesita leer."));
    }
    Ok(())
}

async fn waits_the_backoff_between_attempts() -> Result<(), Failure> {
    let (mailer, mut calls) = FakeMailer::new(&[Step::Fail; 4]);
    let policy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(250),
        attempt_timeout: Duration::from_secs(1),
    };
    let jobs = Jobs::new(mailer.clone(), policy);
    let body = welcome("ana@example.com", "Ana");
    let request = request(&body)?;
    let id = jobs.enqueue(request.clone()).await.map_err(|error| {
        Failure::new("`Jobs::enqueue` rechazó una petición válida").got(error.to_string())
    })?;
    // From here on, virtual time: each `sleep` ends as soon as nothing else can run.
    tokio::time::pause();
    let job = EmailJob {
        id: id.clone(),
        request,
    };
    let worker = jobs.clone();
    let run = tokio::spawn(async move { worker.process(job).await });
    // The first attempt has failed; on this single-threaded runtime `process` has run on to its
    // backoff sleep before this task resumes, so the record shows the wait between attempts.
    next_call(&mut calls).await?;
    tokio::task::yield_now().await;
    let waiting = jobs.status(&id);
    let pending = waiting.as_ref().is_some_and(|record| {
        record.status == JobStatus::Pending
            && record.attempts == 1
            && record
                .last_error
                .as_deref()
                .is_some_and(|error| error.contains(TEMPORARY))
    });
    if !pending {
        return Err(Failure::new("mientras espera el reintento, el trabajo no está pending con el error")
            .expected(format!("status pending, attempts 1 y last_error con «{TEMPORARY}»"))
            .got(format!("{waiting:?}"))
            .hint("Tras un fallo temporal con intentos por delante: `status = Pending` y `last_error = Some(error)`, y después el `sleep`."));
    }
    let status = match tokio::time::timeout(Duration::from_secs(5), run).await {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => return Err(Failure::new("`process` se interrumpió")),
        Err(_) => {
            return Err(Failure::new("`process` no terminó en 5 s de reloj virtual")
                .expected("4 esperas de 100, 200, 250 y 250 ms")
                .got(format!("{} llamadas al Mailer", mailer.calls().len()))
                .hint("¿Esperas `backoff(&self.policy, intento)` con `tokio::time::sleep`? ¿Sales del bucle al terminar?"));
        }
    };
    let instants: Vec<Instant> = mailer.calls().into_iter().map(|(at, _)| at).collect();
    let gaps: Vec<Duration> = instants.windows(2).map(|pair| pair[1] - pair[0]).collect();
    let want = [100u64, 200, 250, 250].map(Duration::from_millis);
    let close = gaps.len() == want.len()
        && gaps
            .iter()
            .zip(want)
            .all(|(gap, want)| *gap >= want && *gap <= want + Duration::from_millis(5));
    if !close {
        return Err(Failure::new("las esperas entre intentos no son las de backoff")
            .expected(format!("{want:?} (base 100 ms, techo 250 ms, 4 fallos y un éxito)"))
            .got(format!("{gaps:?}"))
            .hint("Tras el fallo n, `tokio::time::sleep(backoff(&self.policy, n)).await` (no `std::thread::sleep`, no un tiempo fijo)."));
    }
    let record = jobs
        .status(&id)
        .map(|record| (record.status, record.attempts));
    if status != JobStatus::Done || record != Some((JobStatus::Done, 5)) {
        return Err(Failure::new(
            "tras 4 fallos y un éxito el trabajo no quedó done con 5 intentos",
        )
        .expected("process devuelve Done y el registro dice done, 5 intentos")
        .got(format!("process devolvió {status:?}; registro {record:?}"))
        .hint("Devuelve el estado final y déjalo también en el registro."));
    }
    Ok(())
}

async fn permanent_errors_are_not_retried() -> Result<(), Failure> {
    let (mailer, _calls) = FakeMailer::new(&[Step::Reject]);
    let jobs = Jobs::new(mailer.clone(), FAST);
    let request = request(&welcome("nadie@example.com", "Nadie"))?;
    let id = jobs.enqueue(request.clone()).await.map_err(|error| {
        Failure::new("`Jobs::enqueue` rechazó una petición válida").got(error.to_string())
    })?;
    let job = EmailJob {
        id: id.clone(),
        request,
    };
    let status = tokio::time::timeout(support::WAIT, jobs.process(job))
        .await
        .map_err(|_| {
            Failure::new("`process` no terminó")
                .hint("Un error permanente termina el trabajo enseguida.")
        })?;
    let record = jobs.status(&id);
    let calls = mailer.calls().len();
    let ok = status == JobStatus::Failed
        && calls == 1
        && record.as_ref().is_some_and(|record| {
            record.status == JobStatus::Failed
                && record.attempts == 1
                && record
                    .last_error
                    .as_deref()
                    .is_some_and(|error| error.contains(PERMANENT))
        });
    if !ok {
        return Err(Failure::new("un MailError::Permanent se reintentó o no dejó el trabajo failed")
            .expected(format!("failed al primer intento, 1 llamada al Mailer y last_error con «{PERMANENT}»"))
            .got(format!("process devolvió {status:?}; {calls} llamadas; registro {record:?}"))
            .hint("Empareja `Ok(Err(error @ MailError::Permanent(_)))` aparte: `failed` sin esperar ni reintentar."));
    }
    Ok(())
}

async fn hung_send_times_out() -> Result<(), Failure> {
    let (mailer, _calls) = FakeMailer::new(&[Step::Hang]);
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        attempt_timeout: Duration::from_secs(2),
    };
    let jobs = Jobs::new(mailer.clone(), policy);
    let request = request(&welcome("ana@example.com", "Ana"))?;
    let id = jobs.enqueue(request.clone()).await.map_err(|error| {
        Failure::new("`Jobs::enqueue` rechazó una petición válida").got(error.to_string())
    })?;
    tokio::time::pause();
    let job = EmailJob {
        id: id.clone(),
        request,
    };
    let Ok(status) = tokio::time::timeout(Duration::from_secs(5), jobs.process(job)).await else {
        return Err(Failure::new("un Mailer que no responde dejó el trabajo colgado")
            .expected("que el intento falle a los 2 s (attempt_timeout) y se reintente")
            .got(format!("{} llamadas al Mailer y ninguna respuesta", mailer.calls().len()))
            .hint("Envuelve `self.mailer.send(&email)` en `tokio::time::timeout(self.policy.attempt_timeout, …)`."));
    };
    let instants: Vec<Instant> = mailer.calls().into_iter().map(|(at, _)| at).collect();
    let gap = instants.windows(2).next().map(|pair| pair[1] - pair[0]);
    let want = Duration::from_millis(2100);
    let record = jobs.status(&id);
    let ok = status == JobStatus::Done
        && instants.len() == 2
        && gap.is_some_and(|gap| gap >= want && gap <= want + Duration::from_millis(5))
        && record
            .as_ref()
            .is_some_and(|record| record.attempts == 2 && record.last_error.is_some());
    if !ok {
        return Err(Failure::new("el intento colgado no contó como un fallo temporal")
            .expected("2 intentos separados por 2 s (timeout) + 100 ms (backoff), done, y last_error con el timeout")
            .got(format!("process devolvió {status:?}; {} llamadas; separación {gap:?}; registro {record:?}", instants.len()))
            .hint("Un `Err(_)` de `tokio::time::timeout` es un fallo temporal más: apunta el error, espera `backoff` y reintenta."));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Integración

async fn ten_jobs_each_to_its_recipient() -> Result<(), Failure> {
    let (mailer, _calls) = FakeMailer::new(&[]);
    let (server, _jobs) = service(&mailer, FAST, true).await?;
    let names: Vec<String> = (0..10).map(|n| format!("Persona{n}")).collect();
    let mut ids = Vec::new();
    for name in &names {
        let to = format!("{}@example.com", name.to_lowercase());
        ids.push(accepted(&server, &welcome(&to, name)).await?);
    }
    for id in &ids {
        let record = wait_final(&server, id).await?;
        expect_field(
            &record,
            "status",
            &json!("done"),
            "uno de los diez trabajos no acabó done",
            "Cada trabajo es independiente: su registro es el de su id.",
        )?;
    }
    let mut sent = mailer.emails();
    sent.sort_by(|a, b| a.to.cmp(&b.to));
    let mixed: Vec<String> = sent
        .iter()
        .filter(|email| {
            let name = email.to.split('@').next().unwrap_or_default();
            !email.body.to_lowercase().contains(&format!("hola, {name}"))
        })
        .map(|email| email.to.clone())
        .collect();
    if sent.len() != 10 || !mixed.is_empty() {
        return Err(Failure::new(
            "los diez e-mails no llegaron uno a cada destinatario con su nombre",
        )
        .expected("10 envíos; el de personaN@example.com dice «Hola, PersonaN»")
        .got(format!(
            "{} envíos; mal dirigidos o repetidos: {mixed:?}",
            sent.len()
        ))
        .hint(
            "Cada trabajo lleva su propia petición: renderiza `job.request`, no una compartida.",
        ));
    }
    Ok(())
}

async fn enqueued_from_code_is_visible_over_http() -> Result<(), Failure> {
    let (mailer, _calls) = FakeMailer::new(&[]);
    let (server, jobs) = service(&mailer, FAST, true).await?;
    let request = request(&welcome("carla@example.com", "Carla"))?;
    let id = jobs.enqueue(request).await.map_err(|error| {
        Failure::new("`Jobs::enqueue` rechazó una petición válida").got(error.to_string())
    })?;
    let record = wait_final(&server, &id).await?;
    expect_field(
        &record,
        "status",
        &json!("done"),
        "el trabajo encolado desde código no acabó done",
        "`enqueue` empuja a la MISMA cola que lee el worker (un clon de `self.queue`).",
    )?;
    let sent: Vec<String> = mailer.emails().into_iter().map(|email| email.to).collect();
    if sent != ["carla@example.com"] {
        return Err(Failure::new("el Mailer no recibió exactamente ese e-mail")
            .expected("[\"carla@example.com\"]")
            .got(format!("{sent:?}")));
    }
    Ok(())
}
