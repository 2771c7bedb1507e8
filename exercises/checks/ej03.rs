//! Checks of exercise 3 · Dashboard Live: the SSE stream of metrics (ids, fan-out, keep-alive,
//! `Last-Event-ID` resume from a bounded buffer) and the cached report (`X-Cache`, invalidation
//! on a write, TTL under tokio's paused clock).
//!
//! The SSE checks read the stream with a real client (reqwest's `bytes_stream()` parsed by
//! `eventsource-stream`); the report's computation is a counting closure passed to `app`, so a
//! check knows how many times the "expensive" work ran.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use super::registry::{Block, Check, Failure};
use super::support::{self, Server, WAIT};
use crate::ej03_dashboard_live::{
    self as ej, ComputeReport, DashboardConfig, MetricEvent, MetricSample, MetricsFeed, Report,
    ReportCache,
};

const CRIT_SSE: &str = "Stream SSE en vivo";
const CRIT_RESUME: &str = "Reanudación con Last-Event-ID";
const CRIT_CACHE: &str = "Caché con TTL e invalidación";
const CRIT_ERRORS: &str = "Validación y errores";
const CRIT_TESTS: &str = "Pruebas asíncronas";

const TIMEOUT: Duration = Duration::from_secs(6);

pub fn checks() -> Vec<Check> {
    let check = |block, criterion, points, title, run| Check {
        exercise: 3,
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
            CRIT_SSE,
            3,
            "emite cada métrica publicada como evento metrics con su id",
            |_| Box::pin(emits_each_metric_with_its_id()),
        ),
        check(
            Block::Nucleo,
            CRIT_SSE,
            2,
            "reparte cada métrica a todos los clientes conectados",
            |_| Box::pin(fans_out_to_every_client()),
        ),
        check(
            Block::Nucleo,
            CRIT_RESUME,
            3,
            "reanuda desde Last-Event-ID sin repetir ni saltarse métricas",
            |_| Box::pin(resumes_from_last_event_id()),
        ),
        check(
            Block::Nucleo,
            CRIT_CACHE,
            3,
            "sirve el informe de la caché: MISS la primera vez, HIT después, sin recalcular",
            |_| Box::pin(report_miss_then_hit()),
        ),
        check(
            Block::Nucleo,
            CRIT_CACHE,
            3,
            "invalida el informe cuando llega una métrica nueva",
            |_| Box::pin(write_invalidates_report()),
        ),
        check(
            Block::Calidad,
            CRIT_CACHE,
            3,
            "el informe caduca justo al cumplirse el TTL (reloj pausado)",
            |_| Box::pin(report_expires_at_ttl()),
        ),
        check(
            Block::Calidad,
            CRIT_RESUME,
            2,
            "el buffer de reanudación guarda solo las últimas métricas",
            |_| Box::pin(buffer_is_bounded()),
        ),
        check(
            Block::Calidad,
            CRIT_SSE,
            2,
            "envía un comentario keep-alive mientras no hay métricas",
            |_| Box::pin(sends_keep_alive_comments()),
        ),
        check(
            Block::Calidad,
            CRIT_ERRORS,
            2,
            "rechaza una métrica imposible con 422 sin publicarla ni invalidar el informe",
            |_| Box::pin(rejects_impossible_metric()),
        ),
        check(
            Block::Integracion,
            CRIT_TESTS,
            3,
            "la transcripción SSE coincide con la de referencia",
            |_| Box::pin(sse_transcript_matches_reference()),
        ),
    ]
}

// ----------------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------------

/// The app under test plus how many times it computed the report.
struct TestApp {
    server: Server,
    computations: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl TestApp {
    async fn spawn(config: DashboardConfig) -> Result<Self, Failure> {
        let computations = Arc::new(AtomicUsize::new(0));
        let counter = computations.clone();
        let compute: ComputeReport = Arc::new(move |events: &[MetricEvent]| {
            counter.fetch_add(1, Ordering::SeqCst);
            ej::compute_report(events)
        });
        let server = support::serve(ej::app(config, compute)).await?;
        Ok(Self {
            server,
            computations,
            http: support::http(),
        })
    }

    fn computations(&self) -> usize {
        self.computations.load(Ordering::SeqCst)
    }

    /// `POST /metrics`, expecting `201` and the published event back.
    async fn publish(&self, sample: MetricSample) -> Result<MetricEvent, Failure> {
        let response = self
            .http
            .post(self.server.url("/metrics"))
            .json(&sample)
            .send()
            .await
            .map_err(|error| request_failed("POST /metrics", error))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status != reqwest::StatusCode::CREATED {
            return Err(Failure::new("POST /metrics no publicó la métrica")
                .expected("201 Created con el MetricEvent en JSON")
                .got(format!("{status} {body}"))
                .hint("publica con `feed.publish(sample)` y responde `(StatusCode::CREATED, Json(event))`"));
        }
        serde_json::from_str(&body).map_err(|_| {
            Failure::new("POST /metrics respondió algo que no es un MetricEvent")
                .expected(r#"{"id": 1, "at": "…", "sample": {…}}"#)
                .got(body)
                .hint("responde `Json(event)` con el evento que devuelve `publish`")
        })
    }

    /// `GET /report`: the report and its `X-Cache` header.
    async fn report(&self) -> Result<(Report, String), Failure> {
        let response = self
            .http
            .get(self.server.url("/report"))
            .send()
            .await
            .map_err(|error| request_failed("GET /report", error))?;
        let status = response.status();
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("(sin cabecera)")
            .to_owned();
        let body = response.text().await.unwrap_or_default();
        if status != reqwest::StatusCode::OK {
            return Err(Failure::new("GET /report no respondió el informe")
                .expected("200 OK con el Report en JSON")
                .got(format!("{status} {body}"))
                .hint("¿`get_report` responde `Json(report)`?"));
        }
        let report = serde_json::from_str(&body).map_err(|_| {
            Failure::new("GET /report respondió algo que no es un Report")
                .got(body)
                .hint("responde `Json(report)` con lo que calcula `dashboard.compute`")
        })?;
        Ok((report, cache))
    }

    async fn sse(&self, last_event_id: Option<u64>) -> Result<SseClient, Failure> {
        SseClient::open(&self.server.url("/metrics/stream"), last_event_id).await
    }
}

fn request_failed(what: &str, error: reqwest::Error) -> Failure {
    Failure::new(format!("{what} no respondió"))
        .got(error.to_string())
        .hint("¿El handler termina? Un `todo!()` o un pánico cierran la conexión sin respuesta")
}

fn sample(n: u64) -> MetricSample {
    MetricSample {
        cpu_percent: (10 + n * 7 % 90) as u8,
        requests: 100 * n,
        online_users: n as u32,
    }
}

type EventStream = Pin<
    Box<
        dyn Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// A real SSE client: one HTTP request whose body is parsed as events, every read bounded.
struct SseClient {
    events: EventStream,
}

/// An HTTP client without a total timeout (a stream never "finishes"); each read is bounded.
fn streaming_http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(WAIT)
        .build()
        .unwrap_or_default()
}

/// Opens `GET url` as a stream, checking the status and the `text/event-stream` content type.
async fn open_stream(url: &str, last_event_id: Option<u64>) -> Result<reqwest::Response, Failure> {
    let mut request = streaming_http().get(url);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = match tokio::time::timeout(WAIT, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return Err(request_failed("GET /metrics/stream", error)),
        Err(_) => {
            return Err(
                Failure::new("GET /metrics/stream no devolvió las cabeceras a tiempo").hint(
                    "responde `Sse::new(stream)` enseguida: el stream se lee después, no antes",
                ),
            );
        }
    };
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !response.status().is_success() || !content_type.starts_with("text/event-stream") {
        return Err(Failure::new("GET /metrics/stream no es un stream SSE")
            .expected("200 OK con Content-Type: text/event-stream")
            .got(format!("{} «{content_type}»", response.status()))
            .hint("responde `Sse::new(stream).into_response()`"));
    }
    Ok(response)
}

impl SseClient {
    async fn open(url: &str, last_event_id: Option<u64>) -> Result<Self, Failure> {
        let response = open_stream(url, last_event_id).await?;
        Ok(Self {
            events: Box::pin(response.bytes_stream().eventsource()),
        })
    }

    /// The next event, within [`WAIT`].
    async fn next(&mut self) -> Result<eventsource_stream::Event, Failure> {
        match tokio::time::timeout(WAIT, self.events.next()).await {
            Ok(Some(Ok(event))) => Ok(event),
            Ok(Some(Err(error))) => Err(Failure::new("el stream SSE se cortó con un error")
                .got(error.to_string())
                .hint("¿Un pánico en el stream? Lee el mensaje de arriba")),
            Ok(None) => Err(Failure::new("el servidor cerró el stream SSE")
                .hint("el stream no debe terminar mientras haya métricas que enviar")),
            Err(_) => Err(Failure::new(format!(
                "no llegó ningún evento SSE en {} s",
                WAIT.as_secs()
            ))
            .hint("¿Envías por el canal `broadcast` al publicar y lees de él en el stream?")),
        }
    }

    /// The next `n` events, parsed as metric events (checking `event:` and `id:`).
    async fn next_metrics(&mut self, n: usize) -> Result<Vec<MetricEvent>, Failure> {
        let mut received = Vec::new();
        for _ in 0..n {
            let event = self.next().await.map_err(|failure| {
                failure.expected(format!(
                    "{n} eventos; llegaron {}: {}",
                    received.len(),
                    ids(&received)
                ))
            })?;
            received.push(parse_metric(&event)?);
        }
        Ok(received)
    }
}

/// Checks one SSE event's name, id and data, and returns the metric inside.
fn parse_metric(event: &eventsource_stream::Event) -> Result<MetricEvent, Failure> {
    if event.event != "metrics" {
        return Err(Failure::new("un evento SSE no se llama «metrics»")
            .expected("event: metrics")
            .got(format!("event: «{}» (data: {})", event.event, event.data))
            .hint("usa `Event::default().event(\"metrics\")`"));
    }
    let metric: MetricEvent = serde_json::from_str(&event.data).map_err(|_| {
        Failure::new("el `data:` de un evento no es un MetricEvent en JSON")
            .expected(r#"data: {"id":1,"at":"…","sample":{…}}"#)
            .got(event.data.clone())
            .hint("pon `serde_json::to_string(&event)` en `.data(...)`")
    })?;
    if event.id != metric.id.to_string() {
        return Err(
            Failure::new("el `id:` del evento SSE no es el id de la métrica")
                .expected(format!("id: {}", metric.id))
                .got(format!("id: «{}»", event.id))
                .hint("usa `.id(event.id.to_string())`: el navegador lo devuelve en Last-Event-ID"),
        );
    }
    Ok(metric)
}

fn ids(events: &[MetricEvent]) -> String {
    let ids: Vec<String> = events.iter().map(|event| event.id.to_string()).collect();
    format!("[{}]", ids.join(", "))
}

fn expect_ids(
    events: &[MetricEvent],
    expected: &[u64],
    what: &str,
    hint: &str,
) -> Result<(), Failure> {
    let got: Vec<u64> = events.iter().map(|event| event.id).collect();
    if got == expected {
        return Ok(());
    }
    Err(Failure::new(what.to_owned())
        .expected(format!("ids {expected:?}"))
        .got(format!("ids {got:?}"))
        .hint(hint.to_owned()))
}

// ----------------------------------------------------------------------------------------------
// Checks
// ----------------------------------------------------------------------------------------------

async fn emits_each_metric_with_its_id() -> Result<(), Failure> {
    let app = TestApp::spawn(DashboardConfig::default()).await?;
    // One metric before anyone listens: a new connection must not replay it.
    app.publish(sample(1)).await?;
    let mut client = app.sse(None).await?;
    let second = app.publish(sample(2)).await?;
    let third = app.publish(sample(3)).await?;
    let received = client.next_metrics(2).await?;
    expect_ids(
        &received,
        &[2, 3],
        "el stream no trae las métricas nuevas en orden, con su id",
        "sin Last-Event-ID no reenvíes el buffer: empieza por lo que llegue (ids 2 y 3 aquí)",
    )?;
    if received != [second, third] {
        return Err(
            Failure::new("los eventos SSE no son las métricas publicadas")
                .expected("el mismo MetricEvent que respondió POST /metrics")
                .got(format!("{received:?}"))
                .hint("envía por el canal el mismo evento que guardas y devuelves en `publish`"),
        );
    }
    Ok(())
}

async fn fans_out_to_every_client() -> Result<(), Failure> {
    let app = TestApp::spawn(DashboardConfig::default()).await?;
    let mut first = app.sse(None).await?;
    let mut second = app.sse(None).await?;
    let published = app.publish(sample(1)).await?;
    for (name, client) in [("primer", &mut first), ("segundo", &mut second)] {
        let received = client.next_metrics(1).await.map_err(|failure| {
            Failure::new(format!("el {name} cliente no recibió la métrica"))
                .got(failure.to_string())
                .hint("cada stream necesita su propio `feed.subscribe()` (un receptor del broadcast por cliente)")
        })?;
        if received[0] != published {
            return Err(
                Failure::new(format!("el {name} cliente recibió otra métrica"))
                    .expected(format!("{published:?}"))
                    .got(format!("{:?}", received[0])),
            );
        }
    }
    Ok(())
}

async fn resumes_from_last_event_id() -> Result<(), Failure> {
    let app = TestApp::spawn(DashboardConfig::default()).await?;
    for n in 1..=5 {
        app.publish(sample(n)).await?;
    }
    // Reconnecting after having seen id 2: first 3, 4, 5 from the buffer, then the live 6.
    let mut client = app.sse(Some(2)).await?;
    let replayed = client.next_metrics(3).await.map_err(|failure| {
        failure.hint("con `Last-Event-ID: 2` reenvía primero `feed.since(2)` (ids 3, 4 y 5)")
    })?;
    expect_ids(
        &replayed,
        &[3, 4, 5],
        "con Last-Event-ID: 2 no llegaron las métricas 3, 4 y 5",
        "lee la cabecera con `last_event_id` y reenvía `feed.since(id)` antes de lo nuevo",
    )?;
    app.publish(sample(6)).await?;
    let live = client.next_metrics(1).await?;
    expect_ids(
        &live,
        &[6],
        "tras reanudar, la siguiente métrica no es la 6",
        "después del buffer sigue con el canal en vivo y descarta los ids ya enviados",
    )
}

async fn report_miss_then_hit() -> Result<(), Failure> {
    let app = TestApp::spawn(DashboardConfig {
        report_ttl: Duration::from_secs(60),
        ..DashboardConfig::default()
    })
    .await?;
    app.publish(sample(1)).await?;
    let (first, first_cache) = app.report().await?;
    if first_cache != "MISS" || app.computations() != 1 {
        return Err(Failure::new("el primer GET /report debe calcular el informe")
            .expected("X-Cache: MISS y una llamada a la función de cálculo")
            .got(format!(
                "X-Cache: {first_cache}, {} cálculos",
                app.computations()
            ))
            .hint("si `cache.get()` no tiene nada, llama a `(dashboard.compute)(&feed.since(0))` y pon `x-cache: MISS`"));
    }
    let expected = ej::compute_report(&[MetricEvent {
        id: 1,
        at: chrono::Utc::now(),
        sample: sample(1),
    }]);
    if first != expected {
        return Err(Failure::new("el informe no resume las métricas del buffer")
            .expected(format!("{expected:?}"))
            .got(format!("{first:?}"))
            .hint("calcula con `feed.since(0)`: todas las métricas que guarda el buffer"));
    }
    let (second, second_cache) = app.report().await?;
    if second_cache != "HIT" || app.computations() != 1 {
        return Err(Failure::new("el segundo GET /report, dentro del TTL, no salió de la caché")
            .expected("X-Cache: HIT y ningún cálculo nuevo (1 en total)")
            .got(format!(
                "X-Cache: {second_cache}, {} cálculos",
                app.computations()
            ))
            .hint("guarda el informe con `cache.put(...)` tras calcularlo y respóndelo con `x-cache: HIT` si `cache.get()` lo tiene"));
    }
    if second != first {
        return Err(
            Failure::new("el informe de la caché no es el que se calculó")
                .expected(format!("{first:?}"))
                .got(format!("{second:?}")),
        );
    }
    Ok(())
}

async fn write_invalidates_report() -> Result<(), Failure> {
    let app = TestApp::spawn(DashboardConfig {
        report_ttl: Duration::from_secs(60),
        ..DashboardConfig::default()
    })
    .await?;
    app.publish(sample(1)).await?;
    let (before, _) = app.report().await?;
    let (_, cached) = app.report().await?;
    if cached != "HIT" {
        return Err(Failure::new("el informe no se guarda en la caché")
            .expected("X-Cache: HIT en el segundo GET /report")
            .got(format!("X-Cache: {cached}"))
            .hint("primero haz que pase «sirve el informe de la caché»"));
    }
    app.publish(sample(2)).await?;
    let (after, cache) = app.report().await?;
    if cache != "MISS" || app.computations() != 2 {
        return Err(
            Failure::new("tras POST /metrics el informe siguió saliendo de la caché")
                .expected("X-Cache: MISS y un segundo cálculo")
                .got(format!("X-Cache: {cache}, {} cálculos", app.computations()))
                .hint(
                    "llama a `dashboard.cache.invalidate()` en `post_metric` después de publicar",
                ),
        );
    }
    if after.samples != before.samples + 1 {
        return Err(
            Failure::new("el informe recalculado no incluye la métrica nueva")
                .expected(format!("samples: {}", before.samples + 1))
                .got(format!("samples: {}", after.samples))
                .hint("publica antes de invalidar, y calcula con `feed.since(0)`"),
        );
    }
    Ok(())
}

async fn report_expires_at_ttl() -> Result<(), Failure> {
    // No sockets here: the cache alone, under tokio's paused clock.
    tokio::time::pause();
    let ttl = Duration::from_secs(5);
    let cache = ReportCache::new(ttl);
    let report = ej::compute_report(&[]);
    if cache.get().is_some() {
        return Err(Failure::new("una caché nueva ya tenía un informe")
            .expected("None")
            .hint(
                "`ReportCache::new` empieza vacía: `get` devuelve `None` hasta el primer `put`",
            ));
    }
    cache.put(report.clone());
    tokio::time::advance(ttl - Duration::from_millis(1)).await;
    if cache.get().as_ref() != Some(&report) {
        return Err(Failure::new("el informe caducó antes de tiempo")
            .expected("el informe guardado, 1 ms antes de cumplirse el TTL")
            .got("None")
            .hint("compara `stored_at.elapsed() < ttl`, con `tokio::time::Instant` (el reloj que el test adelanta)"));
    }
    tokio::time::advance(Duration::from_millis(1)).await;
    if cache.get().is_some() {
        // One more second tells an off-by-one (`<=`) from a clock the test cannot move.
        tokio::time::advance(Duration::from_secs(1)).await;
        let hint = if cache.get().is_some() {
            "ni un segundo después del TTL caduca: usa `tokio::time::Instant`, no `std::time::Instant` (el test adelanta el reloj de Tokio con `advance`), y compara con el `ttl` de la caché"
        } else {
            "un segundo después sí caduca: al cumplirse el TTL justo el informe ya no vale, así que compara `stored_at.elapsed() < ttl` (con `<`, no `<=`)"
        };
        return Err(Failure::new("el informe sigue vigente al cumplirse el TTL")
            .expected("None al llegar a los 5 s")
            .got("el informe")
            .hint(hint));
    }
    cache.put(report);
    cache.invalidate();
    if cache.get().is_some() {
        return Err(Failure::new("`invalidate` no olvidó el informe")
            .expected("None tras `invalidate()`")
            .hint("vacía la entrada: `*entry = None`"));
    }
    Ok(())
}

async fn buffer_is_bounded() -> Result<(), Failure> {
    let feed = MetricsFeed::new(3);
    let published: Vec<MetricEvent> = (1..=10).map(|n| feed.publish(sample(n))).collect();
    let ids_published: Vec<u64> = published.iter().map(|event| event.id).collect();
    if ids_published != (1..=10).collect::<Vec<_>>() {
        return Err(
            Failure::new("`publish` no reparte ids consecutivos desde 1")
                .expected("ids [1, 2, …, 10]")
                .got(format!("ids {ids_published:?}"))
                .hint("incrementa `last_id` antes de crear cada evento"),
        );
    }
    expect_ids(
        &feed.since(0),
        &[8, 9, 10],
        "con capacidad 3, el buffer no guarda solo las 3 últimas métricas",
        "tras `push_back`, haz `pop_front` mientras `events.len() > capacity`",
    )?;
    expect_ids(
        &feed.since(9),
        &[10],
        "`since(9)` no devuelve solo lo posterior al id 9",
        "filtra `event.id > last_id`",
    )
}

async fn sends_keep_alive_comments() -> Result<(), Failure> {
    let app = TestApp::spawn(DashboardConfig {
        keep_alive: Duration::from_millis(100),
        ..DashboardConfig::default()
    })
    .await?;
    let response = open_stream(&app.server.url("/metrics/stream"), None).await?;
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(error))) => {
                return Err(
                    Failure::new("el stream SSE se cortó con un error").got(error.to_string())
                );
            }
            Ok(None) => {
                return Err(Failure::new("el servidor cerró el stream sin enviar nada")
                    .hint("el stream no debe terminar aunque no haya métricas"));
            }
            Err(_) => {
                return Err(Failure::new(format!(
                    "en {} s sin métricas no llegó ningún comentario keep-alive",
                    WAIT.as_secs()
                ))
                .expected("una línea «:keep-alive» cada 100 ms (DashboardConfig::keep_alive)")
                .got(if text.is_empty() { "nada".to_owned() } else { text })
                .hint("añade `.keep_alive(KeepAlive::new().interval(dashboard.config.keep_alive).text(\"keep-alive\"))` al `Sse`"));
            }
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.lines().any(|line| line.starts_with(':')) {
            return Ok(());
        }
    }
}

async fn rejects_impossible_metric() -> Result<(), Failure> {
    let app = TestApp::spawn(DashboardConfig {
        report_ttl: Duration::from_secs(60),
        ..DashboardConfig::default()
    })
    .await?;
    app.report().await?;
    let response = app
        .http
        .post(app.server.url("/metrics"))
        .json(&json!({ "cpu_percent": 250, "requests": 1, "online_users": 1 }))
        .send()
        .await
        .map_err(|error| request_failed("POST /metrics", error))?;
    let status = response.status();
    if status != reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        return Err(
            Failure::new("una métrica con cpu_percent 250 no se rechazó con 422")
                .expected("422 Unprocessable Entity con {\"error\": \"…\"}")
                .got(status.to_string())
                .hint("comprueba `sample.cpu_percent > 100` antes de publicar"),
        );
    }
    let (_, cache) = app.report().await?;
    if cache != "HIT" {
        return Err(Failure::new("la métrica rechazada invalidó el informe")
            .expected("X-Cache: HIT (nada cambió)")
            .got(format!("X-Cache: {cache}"))
            .hint("valida primero y devuelve el 422 sin tocar ni el feed ni la caché"));
    }
    let next = app.publish(sample(1)).await?;
    if next.id != 1 {
        return Err(Failure::new("la métrica rechazada se publicó igualmente")
            .expected("que la siguiente métrica válida tenga id 1")
            .got(format!("id {}", next.id))
            .hint("devuelve el 422 antes de llamar a `feed.publish`"));
    }
    Ok(())
}

async fn sse_transcript_matches_reference() -> Result<(), Failure> {
    let app = TestApp::spawn(DashboardConfig::default()).await?;
    let mut transcript = Vec::new();

    let mut first = app.sse(None).await?;
    app.publish(sample(1)).await?;
    app.publish(sample(2)).await?;
    for _ in 0..2 {
        transcript.push(transcript_entry("primera conexión", &first.next().await?)?);
    }
    drop(first);
    app.publish(sample(3)).await?;

    let mut second = app.sse(Some(1)).await?;
    for _ in 0..2 {
        transcript.push(transcript_entry(
            "reconexión con Last-Event-ID: 1",
            &second.next().await?,
        )?);
    }
    support::snapshot(
        "ej03_sse_transcript",
        &Value::Array(transcript),
        "compara tus eventos con los de la referencia: nombre `metrics`, `id:` y el JSON del MetricEvent en `data:`",
    )
}

/// One SSE event as the snapshot stores it, with the time redacted (after checking it is one).
fn transcript_entry(connection: &str, event: &eventsource_stream::Event) -> Result<Value, Failure> {
    let mut data: Value =
        serde_json::from_str(&event.data).unwrap_or(Value::String(event.data.clone()));
    if let Some(at) = data.get_mut("at") {
        let valid = at
            .as_str()
            .is_some_and(|at| chrono::DateTime::parse_from_rfc3339(at).is_ok());
        if !valid {
            return Err(Failure::new("el campo `at` no es una fecha RFC 3339")
                .got(at.to_string())
                .hint(
                    "guarda `Utc::now()` en `at`: serde la escribe como «2026-12-01T20:00:00Z»",
                ));
        }
        *at = Value::String("[hora]".into());
    }
    Ok(json!({
        "conexion": connection,
        "event": event.event,
        "id": event.id,
        "data": data,
    }))
}
