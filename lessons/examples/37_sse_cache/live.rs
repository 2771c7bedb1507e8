//! Paso 1 · SSE para actualizaciones en vivo: `GET /events`.
//!
//! Un flujo de texto que nunca termina: cada evento es un bloque `event:`/`id:`/`data:` y una
//! línea en blanco. El navegador lo abre con `new EventSource("/events")` y, si la conexión se
//! corta, vuelve solo a los `retry` milisegundos enviando la cabecera `Last-Event-ID` con el
//! último id que vio. Nosotros le reenviamos exactamente lo que se perdió, desde un búfer
//! acotado; si lo perdido ya no está en el búfer, se lo decimos con un evento `gap`.
//!
//! El flujo manda cuatro cosas:
//! - `event: message` con `id:`: cada mensaje publicado (lo que no se puede perder);
//! - `event: stats` sin `id:`: las cifras del servidor cada `stats_every` (solo cuenta la última);
//! - `event: gap`: lo que pedías ya no se guarda; empezamos en `oldest`;
//! - `: keep-alive`: un comentario cada `keep_alive`, para que ningún proxy corte por silencio.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio::time::{Interval, MissedTickBehavior};

use super::AppState;

/// Cada cuánto reintenta el navegador tras un corte (`retry:`).
const RETRY: Duration = Duration::from_secs(2);
/// Cuántos eventos caben en el canal en vivo de cada suscriptor antes de quedarse atrás.
const LIVE_CAPACITY: usize = 64;

/// Un mensaje ya publicado, con su id, serializado una sola vez para todos los clientes.
#[derive(Debug)]
pub struct Published {
    pub id: u64,
    pub json: String,
}

/// Lo que se publica: un mensaje en una sala.
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    pub room: &'a str,
    pub user: &'a str,
    pub text: &'a str,
}

// ANCHOR: feed
/// El flujo de mensajes: los últimos `capacity` (para reanudar) y un canal en vivo.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    /// Un `std::sync::Mutex`: se toma para un `push` y nunca durante un `.await`.
    log: Mutex<Log>,
    live: broadcast::Sender<Arc<Published>>,
    /// Cada `POST /api/cut` cambia este número y todos los flujos abiertos terminan.
    cuts: watch::Sender<u64>,
    subscribers: AtomicUsize,
}

struct Log {
    capacity: usize,
    next_id: u64,
    events: VecDeque<Arc<Published>>,
}

impl Feed {
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                log: Mutex::new(Log {
                    capacity: capacity.max(1),
                    next_id: 1,
                    events: VecDeque::new(),
                }),
                live,
                cuts: watch::Sender::new(0),
                subscribers: AtomicUsize::new(0),
            }),
        }
    }

    /// Da un id al mensaje, lo guarda en el búfer (echando al más viejo) y lo emite en vivo.
    pub fn publish(&self, message: &Message<'_>) -> u64 {
        let mut log = self.log();
        let id = log.next_id;
        log.next_id += 1;
        let mut data = json!({ "id": id, "ts": chrono::Utc::now().to_rfc3339() });
        if let (Value::Object(data), Ok(Value::Object(fields))) =
            (&mut data, serde_json::to_value(message))
        {
            data.extend(fields);
        }
        let event = Arc::new(Published {
            id,
            json: data.to_string(),
        });
        log.events.push_back(event.clone());
        while log.events.len() > log.capacity {
            log.events.pop_front();
        }
        // Emitido con el búfer tomado: un suscriptor nuevo ve cada mensaje en el búfer o en
        // vivo, nunca en ninguno de los dos.
        let _ = self.inner.live.send(event);
        id
    }
}
// ANCHOR_END: feed

impl Feed {
    /// El id del último mensaje publicado (0 si no hay ninguno).
    pub fn last_id(&self) -> u64 {
        self.log().next_id - 1
    }

    /// Cuántos flujos SSE están abiertos ahora mismo.
    pub fn subscribers(&self) -> usize {
        self.inner.subscribers.load(Ordering::Relaxed)
    }

    /// Termina todos los flujos abiertos (los navegadores se reconectan solos).
    pub fn cut(&self) -> usize {
        self.inner.cuts.send_modify(|cuts| *cuts += 1);
        self.subscribers()
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        // Nada puede entrar en pánico con el búfer tomado; si pasara, seguiría siendo coherente.
        self.inner
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

// ANCHOR: sse
/// `GET /events`: reenvía lo perdido según `Last-Event-ID` y después sigue en vivo.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Un id que no es un número se ignora, como si no hubiera id.
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let subscription = Subscription::open(state, last_event_id);
    // Sin `.keep_alive(...)` de axum: ese solo habla cuando el flujo calla, y queremos el
    // comentario en su propio reloj (lo manda `Subscription::next`).
    Sse::new(subscription.into_stream())
}
// ANCHOR_END: sse

/// Lo siguiente que manda un flujo, antes de convertirse en un [`Event`] de SSE.
#[derive(Debug)]
enum Out {
    Retry,
    Message(Arc<Published>),
    Gap { oldest: u64 },
    Stats(String),
    KeepAlive,
}

impl Out {
    fn into_event(self) -> Event {
        match self {
            Self::Retry => Event::default().retry(RETRY),
            Self::Message(message) => Event::default()
                .event("message")
                .id(message.id.to_string())
                .data(&message.json),
            Self::Gap { oldest } => Event::default()
                .event("gap")
                .data(json!({ "oldest": oldest }).to_string()),
            Self::Stats(json) => Event::default().event("stats").data(json),
            Self::KeepAlive => Event::default().comment("keep-alive"),
        }
    }
}

/// La posición de un cliente en el flujo: lo pendiente de reenviar y sus relojes.
struct Subscription {
    state: AppState,
    pending: VecDeque<Out>,
    live: broadcast::Receiver<Arc<Published>>,
    cuts: watch::Receiver<u64>,
    keep_alive: Interval,
    stats: Interval,
    /// El id más nuevo que este flujo ya mandó.
    sent_up_to: u64,
}

impl Subscription {
    // ANCHOR: resume
    /// Coloca al cliente: tras `last_event_id` si lo trae (reenviando lo que se perdió), si no
    /// en el mensaje más nuevo (un cliente nuevo no recibe historial).
    fn open(state: AppState, last_event_id: Option<u64>) -> Self {
        let feed = &state.feed;
        let mut pending = VecDeque::from([Out::Retry]);
        // Con el búfer tomado: nos suscribimos al canal y copiamos el búfer en el mismo instante.
        let (live, sent_up_to) = {
            let log = feed.log();
            let live = feed.inner.live.subscribe();
            let newest = log.next_id - 1;
            let sent_up_to = match last_event_id {
                // Un id más nuevo que el último publicado se ignora (¿otro servidor?).
                Some(last) if last <= newest => replay(&mut pending, last, &log.events),
                _ => newest,
            };
            (live, sent_up_to)
        };
        feed.inner.subscribers.fetch_add(1, Ordering::Relaxed);
        let settings = &state.settings;
        Self {
            pending,
            live,
            cuts: feed.inner.cuts.subscribe(),
            keep_alive: timer(settings.keep_alive),
            stats: timer(settings.stats_every),
            sent_up_to,
            state,
        }
    }
    // ANCHOR_END: resume

    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        futures_util::stream::unfold(self, |mut subscription| async move {
            let out = subscription.next().await?;
            Some((Ok(out.into_event()), subscription))
        })
    }

    // ANCHOR: keepalive
    /// El siguiente evento. Cada fuente tiene su propio reloj o canal: el keep-alive sale cada
    /// `keep_alive` aunque haya mensajes y cifras de por medio. `None` termina el flujo.
    async fn next(&mut self) -> Option<Out> {
        loop {
            if let Some(out) = self.pending.pop_front() {
                return Some(out);
            }
            tokio::select! {
                biased;
                _ = self.cuts.changed() => return None,
                _ = self.keep_alive.tick() => return Some(Out::KeepAlive),
                _ = self.stats.tick() => return Some(Out::Stats(self.state.status().to_string())),
                received = self.live.recv() => match received {
                    Ok(message) if message.id > self.sent_up_to => {
                        self.sent_up_to = message.id;
                        return Some(Out::Message(message));
                    }
                    // Ya lo mandamos al reenviar el búfer.
                    Ok(_) => {}
                    // Este cliente lee más despacio de lo que se publica: lo perdido sale del búfer.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let log = self.state.feed.log();
                        self.sent_up_to = replay(&mut self.pending, self.sent_up_to, &log.events);
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
    // ANCHOR_END: keepalive
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.state
            .feed
            .inner
            .subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

// ANCHOR: replay
/// Pone en `pending` lo guardado después de `last` (con un `gap` delante si falta algo que ya
/// no se guarda) y devuelve el id más nuevo puesto, o `last` si no había nada.
fn replay(pending: &mut VecDeque<Out>, last: u64, kept: &VecDeque<Arc<Published>>) -> u64 {
    let Some(oldest) = kept.front().map(|event| event.id) else {
        return last;
    };
    if oldest > last + 1 {
        pending.push_back(Out::Gap { oldest });
    }
    let mut newest = last;
    for event in kept.iter().filter(|event| event.id > last) {
        newest = event.id;
        pending.push_back(Out::Message(event.clone()));
    }
    newest
}
// ANCHOR_END: replay

/// Un reloj que da su primer tic dentro de `period` (no al instante) y no acumula tics perdidos.
fn timer(period: Duration) -> Interval {
    let period = period.max(Duration::from_millis(10));
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// `POST /api/cut`: simula un corte de red. Cierra todos los flujos y publica tres mensajes
/// mientras los clientes están fuera; al volver (solos, con `Last-Event-ID`) los reciben.
pub async fn cut(State(state): State<AppState>) -> Json<Value> {
    let closed = state.feed.cut();
    let mut published = Vec::new();
    for n in 1..=3 {
        let text = format!("publicado durante el corte ({n} de 3)");
        published.push(super::rooms::publish_message(&state, "general", "servidor", &text).await);
    }
    Json(json!({ "closed": closed, "published": published }))
}
