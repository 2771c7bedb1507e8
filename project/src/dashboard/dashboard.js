// Panel en vivo del chat: inicia sesión como administrador y escucha /dashboard/events con
// EventSource. EventSource se reconecta solo y, al volver, envía la cabecera Last-Event-ID con
// el último id recibido: el servidor le reenvía exactamente los eventos de actividad perdidos.
//
// Eventos que llegan:
//   stats     cada segundo: conexiones, usuarios en línea, salas, mensajes, trabajos
//   activity  con id: join, leave, message (nunca el texto) y job
//   gap       {"oldest": N}: faltan eventos antiguos; lo que sigue empieza en N
//   (y un comentario «: keep-alive» cada 15 s, que EventSource ignora)
//
// Ids estables para las pruebas de navegador: #login-form, #username, #password,
// #stat-connections, #stat-users-online, #stat-messages-total, #activity-feed, #connection-status.
'use strict';

const TOKEN_KEY = 'chat.dashboard.token'; // sessionStorage: muere al cerrar la pestaña
const FEED_MAX = 200;                      // elementos de la lista de actividad
const HISTORY_SECONDS = 600;               // 10 minutos de muestras para las gráficas
const PALETTE = ['#8b85ff', '#3ddc97', '#ffc857', '#ff6b6b', '#4fc3f7', '#f48fb1', '#cddc39', '#ffab40'];

const $ = (selector) => document.querySelector(selector);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  source: null,       // el EventSource abierto
  retryTimer: null,
  samples: [],        // [{t, connections, rooms: {sala: mensajes/min}}], una por evento stats
  colors: new Map(),  // sala → color, estable mientras dure la página
};

// ------------------------------------------------------------------------------------------
// Sesión
// ------------------------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  const button = $('#login-button');
  const error = $('#login-error');
  error.hidden = true;
  button.disabled = true;
  try {
    const res = await fetch('/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: $('#username').value.trim(), password: $('#password').value }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      throw new Error(body.error?.message || `Error ${res.status}`);
    }
    const check = await checkAdmin(body.access_token);
    if (check !== 'ok') {
      throw new Error(check);
    }
    state.token = body.access_token;
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $('#password').value = '';
    showDashboard();
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

// EventSource no deja ver el código HTTP de un rechazo: se pregunta antes a /admin/stats, que
// exige lo mismo. Devuelve 'ok' o el motivo, en español.
async function checkAdmin(token) {
  try {
    const res = await fetch('/admin/stats', { headers: { Authorization: `Bearer ${token}` } });
    if (res.ok) {
      renderStats(await res.json());
      return 'ok';
    }
    if (res.status === 403) return 'Esta cuenta no es de administración: el panel es solo para administradores.';
    if (res.status === 401) return 'La sesión no es válida o ha caducado. Vuelve a entrar.';
    return `El servidor respondió ${res.status}.`;
  } catch {
    return 'No se pudo contactar con el servidor.';
  }
}

function logout(message) {
  closeStream();
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $('#dashboard-view').hidden = true;
  $('#login-view').hidden = false;
  $('#logout-button').hidden = true;
  setStatus('off', 'Sin conectar');
  if (message) {
    $('#login-error').textContent = message;
    $('#login-error').hidden = false;
  }
  $('#password').focus();
}

function showDashboard() {
  $('#login-view').hidden = true;
  $('#dashboard-view').hidden = false;
  $('#logout-button').hidden = false;
  openStream();
  requestAnimationFrame(drawCharts);
}

// ------------------------------------------------------------------------------------------
// El flujo de eventos
// ------------------------------------------------------------------------------------------

function openStream() {
  closeStream();
  setStatus('wait', 'Conectando…');
  const source = new EventSource(`/dashboard/events?token=${encodeURIComponent(state.token)}`);
  state.source = source;

  source.onopen = () => setStatus('on', 'En directo');
  source.onerror = () => {
    if (source.readyState === EventSource.CONNECTING) {
      // Se reconecta solo y reanuda con Last-Event-ID.
      setStatus('wait', 'Reconectando…');
      return;
    }
    // CLOSED: el servidor rechazó la conexión (token caducado, o ya no es admin).
    setStatus('off', 'Desconectado');
    recoverClosedStream();
  };

  source.addEventListener('stats', (event) => {
    renderStats(JSON.parse(event.data));
  });
  source.addEventListener('activity', (event) => {
    addActivity(JSON.parse(event.data), event.lastEventId);
  });
  source.addEventListener('gap', (event) => {
    const { oldest } = JSON.parse(event.data);
    addNote(`Hubo más actividad de la que se guarda: se muestra desde el evento #${oldest}.`);
  });
}

function closeStream() {
  clearTimeout(state.retryTimer);
  if (state.source) {
    state.source.close();
    state.source = null;
  }
}

// Un EventSource cerrado no vuelve solo. Si el token ya no vale, a la pantalla de entrada; si
// no, se abre otro pasado un momento (sin Last-Event-ID: lo que pasó mientras tanto se avisa).
async function recoverClosedStream() {
  const check = await checkAdmin(state.token);
  if (check !== 'ok') {
    logout(check);
    return;
  }
  state.retryTimer = setTimeout(() => {
    addNote('Conexión recuperada: puede faltar la actividad de los últimos segundos.');
    openStream();
  }, 3000);
}

function setStatus(kind, text) {
  const status = $('#connection-status');
  status.className = `status status-${kind}`;
  status.textContent = text;
}

// ------------------------------------------------------------------------------------------
// Números
// ------------------------------------------------------------------------------------------

const numberFormat = new Intl.NumberFormat('es-ES');
// Las marcas del eje de las gráficas: 1,25 (coma decimal, como el resto del panel).
const axisFormat = new Intl.NumberFormat('es-ES', { maximumFractionDigits: 2 });

function setNumber(selector, value) {
  const element = $(selector);
  const text = numberFormat.format(value);
  if (element.textContent !== text) {
    element.textContent = text;
    element.classList.remove('bump');
    void element.offsetWidth; // reinicia la animación
    element.classList.add('bump');
  }
}

function renderStats(stats) {
  const perMinute = stats.rooms.reduce((sum, room) => sum + room.messages_per_min, 0);
  setNumber('#stat-connections', stats.connections);
  setNumber('#stat-users-online', stats.users_online);
  setNumber('#stat-messages-total', stats.messages_total);
  setNumber('#stat-messages-per-min', perMinute);
  for (const status of ['pending', 'running', 'done', 'failed', 'dead']) {
    $(`#stat-jobs-${status}`).textContent = numberFormat.format(stats.jobs[status]);
  }
  renderRooms(stats.rooms);
  $('#stat-updated').textContent = new Date(stats.ts).toLocaleTimeString('es-ES');

  const rooms = {};
  for (const room of stats.rooms) rooms[room.room] = room.messages_per_min;
  state.samples.push({ t: Date.parse(stats.ts) || Date.now(), connections: stats.connections, rooms });
  const oldest = Date.now() - HISTORY_SECONDS * 1000;
  while (state.samples.length && state.samples[0].t < oldest) state.samples.shift();
  drawCharts();
}

function renderRooms(rooms) {
  const body = $('#rooms-body');
  const sorted = [...rooms].sort((a, b) =>
    b.messages_per_min - a.messages_per_min || b.online - a.online || a.room.localeCompare(b.room));
  body.replaceChildren(...sorted.map((room) => {
    const row = document.createElement('tr');
    for (const value of [`#${room.room}`, numberFormat.format(room.online), numberFormat.format(room.messages_per_min)]) {
      const cell = document.createElement('td');
      cell.textContent = value;
      row.append(cell);
    }
    return row;
  }));
}

// ------------------------------------------------------------------------------------------
// Actividad
// ------------------------------------------------------------------------------------------

function addActivity(activity, id) {
  const item = document.createElement('li');
  const icon = span('icon', { join: '→', leave: '←', message: '✉', job: '⚙' }[activity.kind] || '•');
  const what = document.createElement('span');
  const room = activity.room ? span('room', `#${activity.room}`) : null;
  const who = activity.user ? span('who', activity.user) : null;
  switch (activity.kind) {
    case 'join':
      what.append(who, ' entró en ', room);
      break;
    case 'leave':
      what.append(who, ' salió de ', room);
      break;
    case 'message':
      what.append(who, ' escribió en ', room, span('muted', ` · mensaje ${activity.message_id}`));
      break;
    case 'job':
      what.append('Trabajo ', span('who', activity.job_id), ` → ${jobStatus(activity.status)}`);
      break;
    default:
      what.append(activity.kind);
  }
  const when = span('when', new Date(activity.ts).toLocaleTimeString('es-ES'));
  when.title = `evento #${id}`;
  item.append(icon, what, when);
  prepend(item);
}

function jobStatus(status) {
  return { pending: 'pendiente', running: 'en curso', done: 'hecho', failed: 'falló (se reintentará)', dead: 'muerto' }[status] || status;
}

function addNote(text) {
  const item = document.createElement('li');
  item.append(span('icon note', '!'), span('note', text), span('when', new Date().toLocaleTimeString('es-ES')));
  prepend(item);
}

function prepend(item) {
  const feed = $('#activity-feed');
  feed.prepend(item);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  $('#feed-empty').hidden = true;
}

function span(className, text) {
  const element = document.createElement('span');
  element.className = className;
  element.textContent = text;
  return element;
}

// ------------------------------------------------------------------------------------------
// Gráficas (canvas dibujado a mano)
// ------------------------------------------------------------------------------------------

function colorOf(room) {
  if (!state.colors.has(room)) state.colors.set(room, PALETTE[state.colors.size % PALETTE.length]);
  return state.colors.get(room);
}

// Prepara el canvas para la densidad de la pantalla y devuelve su contexto y tamaño en CSS px.
function setupCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = Number(canvas.getAttribute('height'));
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.height = `${height}px`;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

function niceMax(value) {
  if (value <= 4) return 4;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

// Ejes, rejilla y etiquetas comunes; devuelve las funciones que llevan (t, valor) a píxeles.
function drawFrame(ctx, width, height, maxValue) {
  const pad = { left: 44, right: 12, top: 12, bottom: 26 };
  const now = Date.now();
  const from = now - HISTORY_SECONDS * 1000;
  const x = (t) => pad.left + ((t - from) / (now - from)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / maxValue) * (height - pad.top - pad.bottom);
  const muted = getComputedStyle(document.body).getPropertyValue('--muted') || '#9aa3bf';
  ctx.font = '12px system-ui, sans-serif';
  ctx.lineWidth = 1;
  ctx.strokeStyle = 'rgba(154, 163, 191, 0.18)';
  ctx.fillStyle = muted;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 4; i += 1) {
    const value = (maxValue / 4) * i;
    const py = y(value);
    ctx.beginPath();
    ctx.moveTo(pad.left, py);
    ctx.lineTo(width - pad.right, py);
    ctx.stroke();
    ctx.fillText(axisFormat.format(value), pad.left - 8, py);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (let minutes = 10; minutes >= 0; minutes -= 2) {
    const px = x(now - minutes * 60000);
    // La última etiqueta se alinea a la derecha para que no se corte en el borde.
    ctx.textAlign = minutes === 0 ? 'right' : 'center';
    ctx.fillText(minutes === 0 ? 'ahora' : `-${minutes} min`, px, height - pad.bottom + 8);
  }
  return { x, y };
}

function drawLine(ctx, points, color, fill, baseline) {
  if (points.length === 0) return;
  ctx.beginPath();
  points.forEach(([px, py], i) => (i === 0 ? ctx.moveTo(px, py) : ctx.lineTo(px, py)));
  ctx.strokeStyle = color;
  ctx.lineWidth = 2.5;
  ctx.lineJoin = 'round';
  ctx.stroke();
  if (fill) {
    ctx.lineTo(points[points.length - 1][0], baseline);
    ctx.lineTo(points[0][0], baseline);
    ctx.closePath();
    ctx.fillStyle = fill;
    ctx.fill();
  }
}

function drawCharts() {
  if ($('#dashboard-view').hidden) return;
  drawMessagesChart();
  drawConnectionsChart();
}

function drawMessagesChart() {
  const { ctx, width, height } = setupCanvas($('#chart-messages'));
  // Las salas con más mensajes en la ventana, para que la gráfica se pueda leer.
  const totals = new Map();
  for (const sample of state.samples) {
    for (const [room, value] of Object.entries(sample.rooms)) {
      totals.set(room, (totals.get(room) || 0) + value);
    }
  }
  const rooms = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, PALETTE.length).map(([room]) => room);
  if (rooms.length === 0) rooms.push('general');
  let max = 0;
  for (const sample of state.samples) {
    for (const room of rooms) max = Math.max(max, sample.rooms[room] || 0);
  }
  const { x, y } = drawFrame(ctx, width, height, niceMax(max));
  for (const room of rooms) {
    const points = state.samples.map((sample) => [x(sample.t), y(sample.rooms[room] || 0)]);
    drawLine(ctx, points, colorOf(room), null, 0);
  }
  $('#chart-legend').replaceChildren(...rooms.map((room) => {
    const item = document.createElement('li');
    const swatch = document.createElement('i');
    swatch.style.background = colorOf(room);
    item.append(swatch, `#${room}`);
    return item;
  }));
}

function drawConnectionsChart() {
  const { ctx, width, height } = setupCanvas($('#chart-connections'));
  const max = niceMax(Math.max(0, ...state.samples.map((sample) => sample.connections)));
  const { x, y } = drawFrame(ctx, width, height, max);
  const points = state.samples.map((sample) => [x(sample.t), y(sample.connections)]);
  drawLine(ctx, points, '#3ddc97', 'rgba(61, 220, 151, 0.15)', y(0));
}

// ------------------------------------------------------------------------------------------
// Arranque
// ------------------------------------------------------------------------------------------

$('#login-form').addEventListener('submit', login);
$('#logout-button').addEventListener('click', () => logout());
window.addEventListener('resize', drawCharts);

if (state.token) {
  checkAdmin(state.token).then((check) => (check === 'ok' ? showDashboard() : logout(check)));
} else {
  $('#password').focus();
}
