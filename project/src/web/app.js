/*
 * Cliente web del chat empresarial (Semana 10): HTML + CSS + JavaScript sin frameworks.
 * Habla el contrato de project/PROTOCOL.md (resumido en el libro: docs/src/proyecto/contrato.md):
 * REST (/auth, /rooms) y un WebSocket (/ws).
 *
 * Idea central: UNA conexión WebSocket transporta varias salas. Por eso guardamos estado
 * por sala (mensajes, usuarios en línea, quién escribe, último id visto, no leídos) y cada
 * frame del servidor lleva el campo "room" para saber a qué sala pertenece.
 *
 * Ganchos estables para tests de navegador (WebDriver):
 *   #login-form  (#username, #password)                 inicio de sesión
 *   #register-form (#reg-username, #reg-email, #reg-password)  registro
 *   #login-error        último error de acceso/registro (texto del servidor)
 *   #current-user       nombre del usuario conectado (data-role = member|admin)
 *   #logout             botón "Cerrar sesión"
 *   #connection-status  estado del WebSocket, data-state = connecting|open|reconnecting|offline
 *   #room-list          salas: cada una es <button data-room="<id>">, aria-current="true" la actual
 *   #new-room-form      crear sala (#new-room-name, #new-room-id, #new-room-private)
 *   #invite-form        invitar a la sala privada actual (#invite-username)
 *   #message-list       mensajes de la sala actual: <li class="message" data-id="<id>">
 *                       (clase "own" si es propio; pendientes: class "message pending" y data-client-id)
 *   #load-older         botón "Cargar anteriores"
 *   #message-input, #send-button, #char-counter          redactar y enviar
 *   #online-list        usuarios en línea de la sala actual: <li data-user="<nombre>">
 *   #typing-indicator   "X está escribiendo…"
 *   #toasts             avisos no bloqueantes (errores, menciones)
 *
 * Las cifras que ve la persona (contadores, segundos) salen de formatNumber: formato es-ES.
 */
'use strict';

// ---------- Constantes (los mismos límites que aplica el servidor) ----------
const MAX_CHARS = 4000;            // el servidor cuenta puntos de código Unicode, no bytes
const TYPING_SEND_EVERY = 2000;    // como mucho un frame "typing" cada 2 s
const TYPING_SHOW_FOR = 3000;      // "X está escribiendo…" dura 3 s tras su último frame
const PING_EVERY = 25000;          // keep-alive de aplicación
const PENDING_TIMEOUT = 10000;     // sin confirmación en 10 s → "no enviado" + Reintentar
const BACKOFF_MIN = 500;           // reconexión: 0,5 s, 1 s, 2 s… hasta 10 s
const BACKOFF_MAX = 10000;
const TOKEN_KEY = 'chat.token';    // sessionStorage: el token muere al cerrar la pestaña
const ROOM_ID_RE = /^[a-z0-9-]{1,32}$/;
// Cifras en formato español: "0,5 s", "12.345". Un solo formateador para toda la página.
const NUMBER_FORMAT = new Intl.NumberFormat('es-ES');
const SECONDS_FORMAT = new Intl.NumberFormat('es-ES', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const formatNumber = (n) => NUMBER_FORMAT.format(n);
const CLOSE_REASONS = {
  1000: 'cierre normal', 1001: 'servidor reiniciándose', 1006: 'conexión perdida',
  1008: 'rechazada por política', 1009: 'mensaje demasiado grande',
  1011: 'error interno del servidor', 1013: 'cola llena',
};

// ---------- Estado global ----------
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,              // respuesta de GET /auth/me
  roomInfo: [],          // respuesta de GET /rooms (nombre, privada, contadores)
  rooms: new Map(),      // id → estado por sala (ver newRoomState)
  current: null,         // id de la sala visible
  ws: null,              // el WebSocket actual (null si no hay)
  attempt: 0,            // intentos de reconexión seguidos (para el backoff)
  lastClose: '',         // "código 1013: cola llena", para el aviso de reconexión
  reconnectTimer: null, pingTimer: null, roomsTimer: null,
};

// Estado de una sala. Vive mientras dura la sesión, aunque el socket se reconecte.
function newRoomState(id) {
  return {
    id,
    wanted: false,       // el usuario la abrió: hay que (re)unirse al reconectar
    joined: false,       // el servidor confirmó "joined" en ESTA conexión…
    joining: false,      // …o enviamos "join" y esperamos respuesta
    sinceSent: null,     // el "since" del último join (null = primer join)
    messages: [],        // confirmados, ordenados por id
    ids: new Set(),      // para no mostrar nunca un id dos veces
    lastSeenId: null,    // último id visto SIN huecos: es el "since" al reconectar
    epoch: null,         // el "epoch" del último "joined": nombra el historial al que se refiere lastSeenId
    catchingUp: false,   // recuperando por REST lo que no cupo en "joined"
    hasOlder: false, loadingOlder: false, // botón "Cargar anteriores"
    pending: new Map(),  // client_id → mensaje enviado aún sin confirmar
    online: new Set(),
    typing: new Map(),   // usuario → temporizador que lo borra a los 3 s
    lastTypingSent: 0,   // para no mandar "typing" más de una vez cada 2 s
    unread: 0,           // insignia de no leídos
  };
}

function roomState(id) {
  if (!state.rooms.has(id)) state.rooms.set(id, newRoomState(id));
  return state.rooms.get(id);
}

const currentRoom = () => (state.current ? state.rooms.get(state.current) : null);
const isMe = (user) => !!state.me && user === state.me.username;
const $ = (selector) => document.querySelector(selector);

// Crea un elemento. El texto va SIEMPRE por textContent: nunca interpretamos HTML de usuarios.
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Botón con texto visible (type="button" para que no envíe el formulario en el que esté).
function button(label, className, onClick) {
  const node = el('button', className, label);
  node.type = 'button';
  if (onClick) node.addEventListener('click', onClick);
  return node;
}

// crypto.randomUUID solo existe en contextos seguros (https o localhost): damos una alternativa.
function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---------- REST: api() ----------
// Un Error con los datos útiles de la respuesta: status, code (del contrato) y Retry-After.
const apiError = (status, code, message, retryAfter = 0) => Object.assign(new Error(message), { status, code, retryAfter });

// fetch + JSON + errores del contrato {"error":{"code","message"}}. Un 401 con token = sesión caducada.
async function api(path, { method = 'GET', body, auth = true } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth && state.token) headers.Authorization = `Bearer ${state.token}`;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw apiError(0, 'network', 'No se pudo contactar con el servidor.');
  }
  const data = await res.json().catch(() => null);
  if (res.ok) return data;
  const err = (data && data.error) || {};
  if (res.status === 401 && auth) expireSession();
  throw apiError(res.status, err.code || `http_${res.status}`, err.message || `Error HTTP ${res.status}`,
    Number(res.headers.get('Retry-After')) || 0);
}

const roomPath = (id) => `/rooms/${encodeURIComponent(id)}`;

// ---------- Acceso: login, registro, logout ----------
// Envoltorio de los dos formularios de acceso: limpia el error, ejecuta y muestra el fallo.
function authSubmit(action) {
  return async (event) => {
    event.preventDefault();
    const form = event.currentTarget; // tras un await, event.currentTarget ya es null
    showAuthError('');
    try { await action(); } catch (e) { showAuthError(e, form); }
  };
}

// POST /auth/register y, si va bien, entramos directamente con esas credenciales.
async function register() {
  const username = $('#reg-username').value.trim();
  const password = $('#reg-password').value;
  await api('/auth/register', { method: 'POST', auth: false, body: { username, password, email: $('#reg-email').value.trim() } });
  await login(username, password);
}

// POST /auth/login → guardamos el token y arrancamos la sesión.
async function login(username, password) {
  const data = await api('/auth/login', { method: 'POST', auth: false, body: { username, password } });
  state.token = data.access_token;
  sessionStorage.setItem(TOKEN_KEY, state.token);
  await startSession();
}

// Muestra el mensaje del servidor; en un 429 bloquea el formulario los segundos de Retry-After.
function showAuthError(error, form) {
  const box = $('#login-error');
  if (!error) { box.textContent = ''; return; }
  let text = error.message || String(error);
  if (error.status === 429 && error.retryAfter) {
    text += ` Vuelve a intentarlo en ${formatNumber(error.retryAfter)} s.`;
    if (form) lockForm(form, error.retryAfter);
  }
  box.textContent = text;
}

// Desactiva el botón de envío del formulario durante `seconds` segundos.
function lockForm(form, seconds) {
  const submit = form.querySelector('button[type="submit"]');
  submit.disabled = true;
  setTimeout(() => { submit.disabled = false; }, seconds * 1000);
}

// Tras el login: quién soy, qué salas hay, abrir el WebSocket y entrar en #general.
async function startSession() {
  state.me = await api('/auth/me');
  Object.assign($('#current-user'), { textContent: state.me.username, title: state.me.email || '' });
  $('#current-user').dataset.role = state.me.role || 'member';
  $('#current-avatar').textContent = state.me.username.slice(0, 1).toUpperCase();
  $('#auth-view').hidden = true;
  $('#chat-view').hidden = false;
  clearAuthForms(); // la contraseña no se queda en la página mientras chateas
  await loadRooms();
  connect();
  selectRoom(state.current || 'general');
  state.roomsTimer = setInterval(loadRooms, 30000); // contadores e invitaciones nuevas
}

// Cerrar sesión (o sesión caducada): cerramos el socket SIN reconectar y limpiamos todo.
function logout(message = '') {
  const ws = state.ws;
  state.ws = null;              // el onclose de ese socket verá que ya no es el actual → no reconecta
  if (ws) ws.close(1000, 'logout');
  [state.reconnectTimer, state.pingTimer, state.roomsTimer].forEach((timer) => clearTimeout(timer));
  for (const room of state.rooms.values()) {
    room.typing.forEach((timer) => clearTimeout(timer));
    room.pending.forEach((p) => clearTimeout(p.timer));
  }
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { token: null, me: null, roomInfo: [], rooms: new Map(), current: null, attempt: 0 });
  $('#chat-view').hidden = true;
  $('#auth-view').hidden = false;
  // Nada de la persona que se fue queda en la página: avisos, borradores, salas, formularios.
  $('#toasts').replaceChildren();
  clearAuthForms();
  for (const form of ['#new-room-form', '#invite-form', '#message-form']) $(form).reset();
  delete $('#new-room-id').dataset.edited;
  Object.assign($('#current-user'), { textContent: '', title: '' });
  $('#current-avatar').textContent = '';
  renderAll();
  setStatus('offline', 'Desconectado');
  showAuthError(message ? { message } : '');
}

// Vacía los formularios de acceso: en un ordenador compartido (un aula) quien llega después no
// debe ver el usuario, el correo ni la contraseña de quien se fue.
function clearAuthForms() {
  $('#login-form').reset();
  $('#register-form').reset();
}

function expireSession() {
  if (state.token) logout('Tu sesión ha caducado. Vuelve a iniciar sesión.');
}

// ---------- WebSocket: conexión, reconexión y keep-alive ----------
function connect() {
  if (!state.token || state.ws) return; // nunca dos sockets a la vez
  clearTimeout(state.reconnectTimer);
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  let opened = false;
  if (state.attempt) setStatus('reconnecting', `Reconectando… (${state.lastClose}) · intento ${formatNumber(state.attempt)}`);
  else setStatus('connecting', 'Conectando…');

  ws.onopen = () => {
    if (state.ws !== ws) return;
    opened = true;
    state.attempt = 0;
    setStatus('open', 'Conectado');
    state.pingTimer = setInterval(() => sendFrame({ type: 'ping' }), PING_EVERY);
    // Volvemos a unirnos a cada sala abierta con since = último id visto: ni huecos ni repetidos.
    for (const room of state.rooms.values()) if (room.wanted) joinRoom(room);
    loadRooms();
  };

  ws.onmessage = (event) => { if (state.ws === ws) handleFrame(event.data); };

  // El navegador siempre lanza "close" (también tras "error"), así que reconectamos solo aquí.
  ws.onclose = (event) => {
    if (state.ws !== ws) return; // socket antiguo o logout: no hacemos nada
    state.ws = null;
    clearInterval(state.pingTimer);
    for (const room of state.rooms.values()) Object.assign(room, { joined: false, joining: false, online: new Set() });
    renderRooms();
    renderRoomPanel();
    scheduleReconnect(event, opened);
  };
}

// Backoff exponencial con jitter: 0,5 s → 1 → 2 → 4 → 8 → 10 s (±25 % al azar para que
// miles de clientes no reconecten a la vez tras un reinicio del servidor).
function scheduleReconnect(event, opened) {
  const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** state.attempt);
  const delay = Math.min(BACKOFF_MAX, Math.round(base * (0.75 + Math.random() * 0.5)));
  state.attempt += 1;
  state.lastClose = describeClose(event);
  setStatus('reconnecting', `Reconectando… (${state.lastClose}) · nuevo intento en ${SECONDS_FORMAT.format(delay / 1000)} s`);
  state.reconnectTimer = setTimeout(async () => {
    // El navegador no nos deja ver el HTTP 401 de un upgrade rechazado: si el socket ni llegó
    // a abrirse, preguntamos a /auth/me. Si da 401, api() ya nos devolvió al login.
    if (!opened) {
      try { await api('/auth/me'); } catch (e) { if (e.status === 401) return; }
    }
    connect();
  }, delay);
}

function describeClose(event) {
  const why = CLOSE_REASONS[event.code];
  const reason = event.reason && event.reason !== why ? ` — ${event.reason}` : '';
  return `código ${event.code}${why ? `: ${why}` : ''}${reason}`;
}

// Envía un frame JSON si el socket está abierto. Devuelve si se pudo enviar.
function sendFrame(frame) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify(frame));
  return true;
}

// {"type":"join","room","since"?,"epoch"?}: con since el servidor manda solo lo que nos perdimos.
// Con epoch, además, nos avisa ("reset") si ese historial ya no existe y los ids empezaron de nuevo.
function joinRoom(room) {
  room.wanted = true;
  if (room.joined || room.joining) return;
  const frame = { type: 'join', room: room.id };
  if (room.lastSeenId !== null) frame.since = room.lastSeenId;
  if (room.epoch !== null) frame.epoch = room.epoch;
  if (sendFrame(frame)) {
    room.joining = true;
    room.sinceSent = room.lastSeenId;
  }
}

// ---------- Frames del servidor: un manejador por "type" ----------
const handlers = {
  joined: onJoined, message: onMessage, presence: onPresence, typing: onTyping,
  notification: onNotification, error: onErrorFrame, left: onLeft, pong: () => {},
  rooms_changed: onRoomsChanged,
};

function handleFrame(raw) {
  let frame;
  try { frame = JSON.parse(raw); } catch { console.warn('Frame no JSON', raw); return; }
  const handler = handlers[frame.type];
  if (handler) handler(frame); else console.warn('Frame desconocido', frame); // tolerante a tipos nuevos
}

// "joined": lista de conectados + historial (los últimos 50, o lo posterior a since).
// Con "reset": true el servidor perdió el historial que conocíamos (otro "epoch"): los ids
// empezaron de nuevo, así que lo que teníamos se descarta y manda el historial de este "joined".
function onJoined(frame) {
  const room = roomState(frame.room);
  if (frame.reset) {
    Object.assign(room, { messages: [], ids: new Set(), lastSeenId: null, catchingUp: false, sinceSent: null });
  }
  room.epoch = frame.epoch ?? null;
  const resumed = room.sinceSent !== null; // ¿era una reconexión con since (y el mismo historial)?
  Object.assign(room, { joined: true, joining: false, wanted: true });
  room.online = new Set(frame.online || []);
  const history = frame.history || [];
  if (!resumed) room.hasOlder = frame.has_more ?? history.length >= 50;
  addMessages(room, history, { countUnread: resumed });
  if (frame.truncated) catchUp(room); // más de 1000 perdidos: el resto por REST
  for (const pending of room.pending.values()) sendPending(room, pending); // lo que quedó sin confirmar
  if (room.id === state.current) renderMessages({ scroll: resumed ? 'auto' : 'bottom' });
  renderRooms();
  renderRoomPanel();
}

// "message": mensaje nuevo en directo (también el eco de los nuestros, con su client_id).
function onMessage(msg) {
  const room = state.rooms.get(msg.room);
  if (!room) return;
  clearTyping(room, msg.user);
  const previous = room.messages[room.messages.length - 1];
  const atBottom = isAtBottom();
  const added = addMessages(room, [msg], { countUnread: true });
  if (room.id === state.current) {
    if (added && (!previous || msg.id > previous.id)) {
      appendMessageEl(msg); // caso normal: al final, sin redibujar toda la lista
      if (atBottom || isMe(msg.user)) scrollToBottom();
    } else {
      renderMessages();
    }
    renderTyping();
  }
  renderRooms();
}

// "presence": alguien entra o sale de la sala (primera/última conexión).
function onPresence(frame) {
  const room = state.rooms.get(frame.room);
  if (!room) return;
  if (frame.status === 'online') room.online.add(frame.user); else room.online.delete(frame.user);
  renderRooms();
  if (room.id === state.current) renderRoomPanel();
}

// "typing": mostramos "X está escribiendo…" durante 3 s desde su último aviso.
function onTyping(frame) {
  const room = state.rooms.get(frame.room);
  if (!room || isMe(frame.user)) return;
  clearTimeout(room.typing.get(frame.user));
  room.typing.set(frame.user, setTimeout(() => clearTyping(room, frame.user), TYPING_SHOW_FOR));
  if (room.id === state.current) renderTyping();
}

function clearTyping(room, user) {
  if (!room.typing.has(user)) return;
  clearTimeout(room.typing.get(user));
  room.typing.delete(user);
  if (room.id === state.current) renderTyping();
}

// "notification": nos han mencionado (quizá en una sala que no estamos mirando).
function onNotification(frame) {
  if (frame.kind !== 'mention') return;
  toast(`@${frame.from} te mencionó en #${frame.room}`, {
    kind: 'mention',
    action: frame.room !== state.current ? { label: 'Abrir', run: () => selectRoom(frame.room) } : null,
  });
  if (!state.roomInfo.some((r) => r.id === frame.room)) loadRooms(); // p. ej. nos acaban de invitar
}

// "error": la conexión sigue abierta; solo avisamos. El frame no dice a qué sala ni a qué frame
// se refiere: liberamos las salas que esperaban "joined" para que un clic reintente el join,
// y si es not_member / not_found dejamos de reintentarlas al reconectar.
function onErrorFrame(frame) {
  const refused = frame.code === 'not_member' || frame.code === 'not_found';
  for (const room of state.rooms.values()) {
    if (!room.joining) continue;
    room.joining = false;
    if (refused) room.wanted = false;
  }
  renderRoomPanel();
  toast(frame.message || frame.code, { kind: 'error', detail: frame.code });
}

// "rooms_changed": cambió la lista de salas que puedo ver (alguien creó una sala pública, o me
// añadieron a una privada o me quitaron de ella). El frame no trae la lista: la pedimos por REST.
function onRoomsChanged() {
  loadRooms();
}

// "left": ya no estamos en la sala. Este cliente no envía "leave", así que llega cuando alguien
// nos quita de una sala privada: dejamos de pedirla al reconectar, volvemos a pedir la lista de
// salas y, si era la que mirábamos, pasamos a #general.
function onLeft(frame) {
  const room = state.rooms.get(frame.room);
  if (!room) return;
  Object.assign(room, { joined: false, joining: false, wanted: false, online: new Set() });
  if (frame.room === state.current && frame.room !== 'general') {
    toast(`Ya no eres miembro de #${frame.room}.`);
    selectRoom('general');
  }
  loadRooms();
}

// ---------- Mensajes: guardar sin duplicados y recuperar huecos ----------
// Inserta mensajes ordenados por id; devuelve cuántos eran nuevos.
function addMessages(room, list, { countUnread = false } = {}) {
  let added = 0;
  for (const msg of list) {
    resolvePending(room, msg);
    if (room.ids.has(msg.id)) continue; // dedupe: nunca mostramos un id dos veces
    room.ids.add(msg.id);
    const last = room.messages[room.messages.length - 1];
    room.messages.push(msg);
    if (last && msg.id < last.id) room.messages.sort((a, b) => a.id - b.id);
    if (countUnread && room.id !== state.current && !isMe(msg.user)) room.unread += 1;
    added += 1;
  }
  // Mientras recuperamos un hueco por REST, lastSeenId lo avanza catchUp(), no los mensajes en directo.
  if (!room.catchingUp && room.messages.length) room.lastSeenId = room.messages[room.messages.length - 1].id;
  return added;
}

// "truncated": true → pedimos GET /messages?after=<último>&limit=200 hasta has_more = false.
async function catchUp(room) {
  if (room.catchingUp) return;
  room.catchingUp = true;
  let cursor = room.lastSeenId ?? 0;
  const epoch = room.epoch; // un "reset" a mitad invalida el cursor: paramos
  while (state.token && state.rooms.get(room.id) === room && room.epoch === epoch) {
    try {
      const page = await api(`${roomPath(room.id)}/messages?after=${cursor}&limit=200`);
      if (room.epoch !== epoch) break; // llegó un "reset" mientras esperábamos
      addMessages(room, page.messages, { countUnread: true });
      if (page.messages.length) cursor = page.messages[page.messages.length - 1].id;
      room.lastSeenId = cursor;
      if (room.id === state.current) renderMessages();
      renderRooms();
      if (!page.has_more || !page.messages.length) break;
    } catch (e) {
      if (e.status >= 400 && e.status < 500 && e.status !== 429) break; // 401, 403…: no tiene arreglo
      toast(`No se pudo recuperar el historial de #${room.id}; reintentando…`, { kind: 'error' });
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  }
  room.catchingUp = false;
  addMessages(room, []); // ya no hay hueco: lastSeenId = el id más alto
}

// "Cargar anteriores": GET /messages?before=<id más antiguo>&limit=50.
async function loadOlder() {
  const room = currentRoom();
  if (!room || room.loadingOlder || !room.messages.length) return;
  room.loadingOlder = true;
  renderLoadOlder();
  try {
    const page = await api(`${roomPath(room.id)}/messages?before=${room.messages[0].id}&limit=50`);
    addMessages(room, page.messages);
    room.hasOlder = page.has_more;
    if (room.id === state.current) renderMessages({ scroll: 'keep' });
  } catch (e) {
    toast(e.message, { kind: 'error' });
  } finally {
    room.loadingOlder = false;
    renderLoadOlder();
  }
}

// ---------- Enviar: pendientes con client_id ----------
// Devuelve un texto de error, o '' si el mensaje es válido (mismas reglas que el servidor).
function validateText(text) {
  if (!text.trim()) return 'El mensaje está vacío.';
  if ([...text].length > MAX_CHARS) return `Máximo ${formatNumber(MAX_CHARS)} caracteres.`;
  return '';
}

function onMessageSubmit(event) {
  event.preventDefault();
  const room = currentRoom();
  const input = $('#message-input');
  const problem = validateText(input.value);
  if (!room || problem) { if (problem) toast(problem, { kind: 'error' }); return; }
  const pending = { client_id: newClientId(), user: state.me.username, text: input.value, ts: new Date().toISOString() };
  room.pending.set(pending.client_id, pending);
  sendPending(room, pending);
  input.value = '';
  updateComposer();
  renderMessages({ scroll: 'bottom' });
}

// Envía (o reenvía) un pendiente. Repetir el mismo client_id es seguro: el servidor no duplica.
function sendPending(room, pending) {
  pending.failed = false;
  clearTimeout(pending.timer);
  if (room.joined) sendFrame({ type: 'send', room: room.id, text: pending.text, client_id: pending.client_id });
  // Si no estamos conectados, se reenviará solo al volver a unirnos (ver onJoined).
  pending.timer = setTimeout(() => { pending.failed = true; if (room.id === state.current) renderMessages(); }, PENDING_TIMEOUT);
}

// Llega un mensaje con un client_id nuestro → deja de estar pendiente.
function resolvePending(room, msg) {
  if (!msg.client_id || !isMe(msg.user) || !room.pending.has(msg.client_id)) return;
  clearTimeout(room.pending.get(msg.client_id).timer);
  room.pending.delete(msg.client_id);
  document.querySelector(`#message-list [data-client-id="${CSS.escape(msg.client_id)}"]`)?.remove();
}

// Enter envía; Shift+Enter hace salto de línea (isComposing: no cortar teclados IME).
function onInputKeydown(event) {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $('#message-form').requestSubmit();
  }
}

// Al escribir: contador y, como mucho cada 2 s, {"type":"typing"}.
function onInputChange() {
  updateComposer();
  const room = currentRoom();
  if (!room || !room.joined || !$('#message-input').value.trim()) return;
  const now = Date.now();
  if (now - room.lastTypingSent >= TYPING_SEND_EVERY && sendFrame({ type: 'typing', room: room.id })) {
    room.lastTypingSent = now;
  }
}

// ---------- Salas: seleccionar, listar, crear, invitar ----------
function selectRoom(id) {
  const room = roomState(id);
  state.current = id;
  room.unread = 0;
  joinRoom(room);
  renderAll();
  if (matchMedia('(pointer: fine)').matches) $('#message-input').focus();
}

async function loadRooms() {
  try {
    state.roomInfo = await api('/rooms');
  } catch (e) {
    return console.warn('GET /rooms falló', e);
  }
  renderRooms();
  renderRoomPanel();
}

// Nombre "Equipo Backend" → id sugerido "equipo-backend" (mientras no lo edites a mano).
function slugify(text) {
  return text.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
    .replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 32);
}

async function onCreateRoom(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const id = $('#new-room-id').value.trim();
  const name = $('#new-room-name').value.trim() || id;
  if (!ROOM_ID_RE.test(id)) { toast('El identificador solo admite a-z, 0-9 y guiones (1–32).', { kind: 'error' }); return; }
  try {
    await api('/rooms', { method: 'POST', body: { id, name, private: $('#new-room-private').checked } });
    form.reset();
    delete $('#new-room-id').dataset.edited;
    toast(`Sala #${id} creada.`);
    await loadRooms();
    selectRoom(id);
  } catch (e) {
    toast(e.message, { kind: 'error' });
  }
}

async function onInvite(event) {
  event.preventDefault();
  const input = $('#invite-username');
  const username = input.value.trim();
  const roomId = state.current;
  if (!username || !roomId) return;
  try {
    await api(`${roomPath(roomId)}/members`, { method: 'POST', body: { username } });
    input.value = '';
    toast(`${username} ya es miembro de #${roomId}.`);
  } catch (e) {
    toast(e.message, { kind: 'error' });
  }
}

// ---------- Render: funciones que pintan el estado en el DOM ----------
function renderAll() {
  renderRooms();
  renderRoomPanel();
  renderMessages({ scroll: 'bottom' });
  renderTyping();
  updateComposer();
}

// Lista de salas: nombre, 🔒 si es privada, usuarios en línea y no leídos.
function renderRooms() {
  const list = $('#room-list');
  const focused = document.activeElement?.dataset?.room; // conservar el foco de teclado
  const infos = [...state.roomInfo];
  for (const room of state.rooms.values()) {
    if (room.wanted && !infos.some((r) => r.id === room.id)) infos.push({ id: room.id, name: room.id, online: 0 });
  }
  list.replaceChildren(...infos.map((info) => {
    const room = state.rooms.get(info.id);
    const item = button('', 'room-button');
    item.dataset.room = info.id;
    if (info.id === state.current) item.setAttribute('aria-current', 'true');
    const name = el('span', 'room-name', `${info.private ? '🔒' : '#'} ${info.name}`);
    if (info.private) name.append(el('span', 'sr-only', ' (privada)'));
    const online = room && room.joined ? room.online.size : info.online || 0;
    item.append(name, el('span', 'room-online', `${formatNumber(online)} en línea`));
    if (room && room.unread) item.append(el('span', 'badge', formatNumber(room.unread)), el('span', 'sr-only', ' sin leer'));
    const li = el('li');
    li.append(item);
    return li;
  }));
  if (focused) list.querySelector(`[data-room="${CSS.escape(focused)}"]`)?.focus();
  updateTitle();
}

// Cabecera de la sala, usuarios en línea y formulario de invitación.
function renderRoomPanel() {
  const room = currentRoom();
  const info = state.roomInfo.find((r) => r.id === state.current);
  $('#room-title').textContent = room ? `${info && info.private ? '🔒' : '#'} ${info ? info.name : room.id}` : 'Elige una sala';
  const meta = !room ? '' : room.joined ? `${formatNumber(room.online.size)} en línea` : room.joining ? 'Uniéndose…' : 'Sin conexión a la sala';
  $('#room-meta').textContent = meta;
  $('#invite-form').hidden = !(info && info.private);
  const users = room ? [...room.online].sort() : [];
  $('#online-count').textContent = users.length ? formatNumber(users.length) : '';
  $('#online-list').replaceChildren(...users.map((user) => {
    const li = el('li', isMe(user) ? 'me' : '', isMe(user) ? `${user} (tú)` : user);
    li.dataset.user = user;
    return li;
  }));
  $('#message-input').placeholder = room ? `Mensaje para ${info ? info.name : room.id}… (Enter envía, Shift+Enter: nueva línea)` : 'Elige una sala';
}

// Redibuja toda la lista. scroll: 'bottom' (al final), 'keep' (tras cargar anteriores), 'auto'.
function renderMessages({ scroll = 'auto' } = {}) {
  const scroller = $('#message-scroll');
  const list = $('#message-list');
  const room = currentRoom();
  const atBottom = isAtBottom();
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  const fragment = document.createDocumentFragment();
  if (room) {
    for (const msg of room.messages) fragment.append(messageEl(msg));
    for (const pending of room.pending.values()) fragment.append(messageEl(pending, true));
  }
  if (!fragment.childNodes.length) {
    fragment.append(el('li', 'empty', room ? 'Todavía no hay mensajes. ¡Saluda!' : 'Elige una sala a la izquierda.'));
  }
  list.setAttribute('aria-busy', 'true'); // que el lector de pantalla no relea toda la lista
  list.replaceChildren(fragment);
  list.removeAttribute('aria-busy');
  if (scroll === 'bottom' || (scroll === 'auto' && atBottom)) scrollToBottom();
  else if (scroll === 'keep') scroller.scrollTop = scroller.scrollHeight - fromBottom;
  renderLoadOlder();
}

// Añade un mensaje confirmado al final, antes de los pendientes (que siempre van abajo).
function appendMessageEl(msg) {
  const list = $('#message-list');
  list.querySelector('.empty')?.remove();
  list.insertBefore(messageEl(msg), list.querySelector('.message.pending'));
}

// Un mensaje: autor, hora local y texto (como TEXTO, con las @menciones resaltadas).
function messageEl(msg, pending = false) {
  const li = el('li', 'message');
  if (isMe(msg.user)) li.classList.add('own');
  if (pending) li.classList.add('pending');
  if (pending) li.dataset.clientId = msg.client_id;
  else li.dataset.id = msg.id;
  const meta = el('div', 'meta');
  const time = el('time', null, formatTime(msg.ts));
  time.dateTime = msg.ts;
  time.title = new Date(msg.ts).toLocaleString('es-ES');
  meta.append(el('strong', 'author', msg.user), time);
  if (pending) {
    meta.append(el('span', 'state', msg.failed ? 'no enviado' : 'pendiente…'));
    if (msg.failed) {
      const room = currentRoom();
      meta.append(button('Reintentar', 'link', () => { sendPending(room, msg); renderMessages(); }),
        button('Descartar', 'link', () => { resolvePending(room, msg); renderMessages(); }));
    }
  }
  const body = el('div', 'text');
  if (appendTextWithMentions(body, msg.text, msg.user)) li.classList.add('mentions-me');
  li.append(meta, body);
  return li;
}

// Una mención, con la MISMA regla que el servidor (`parse` en project/src/mentions.rs; la
// prueba de navegador `mentions_are_highlighted_with_the_servers_rule` compara las dos): una
// `@` al principio o tras un carácter que no puede ir en un nombre (otra `@` sí puede ir
// delante: `@@ana` menciona a ana), seguida de un nombre ENTERO de 3 a 32 caracteres
// [A-Za-z0-9_] (con uno más ya no es una mención, no se corta en 32). Sin la bandera `i`: con
// ella `[a-z]` aceptaría letras que no son ASCII.
const MENTION_RE = /(?<![A-Za-z0-9_])@([A-Za-z0-9_]{3,32})(?![A-Za-z0-9_])/g;

// Trocea el texto en nodos de texto y <span class="mention">. Devuelve si me mencionan (como
// el servidor: nunca en un mensaje mío).
function appendTextWithMentions(container, text, author) {
  let last = 0;
  let mentionsMe = false;
  for (const match of text.matchAll(MENTION_RE)) {
    container.append(text.slice(last, match.index)); // append(string) crea un nodo de TEXTO
    const span = el('span', 'mention', match[0]);
    if (state.me && !isMe(author) && match[1].toLowerCase() === state.me.username.toLowerCase()) {
      span.classList.add('mention-me');
      mentionsMe = true;
    }
    container.append(span);
    last = match.index + match[0].length;
  }
  container.append(text.slice(last));
  return mentionsMe;
}

// "14:05" si es de hoy; "12/03 14:05" si no. `ts` es RFC 3339 en UTC: Date lo pasa a hora local.
function formatTime(ts) {
  const date = new Date(ts);
  const time = date.toLocaleTimeString('es-ES', { hour: '2-digit', minute: '2-digit' });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString('es-ES', { day: '2-digit', month: '2-digit' })} ${time}`;
}

function renderLoadOlder() {
  const room = currentRoom();
  const older = $('#load-older');
  older.hidden = !(room && room.hasOlder && room.messages.length);
  older.disabled = !!(room && room.loadingOlder);
  older.textContent = room && room.loadingOlder ? 'Cargando…' : 'Cargar anteriores';
}

// "ana está escribiendo…" / "ana y luis están escribiendo…" / "Varias personas…".
function renderTyping() {
  const room = currentRoom();
  const users = room ? [...room.typing.keys()] : [];
  let text = '';
  if (users.length === 1) text = `${users[0]} está escribiendo…`;
  else if (users.length === 2) text = `${users[0]} y ${users[1]} están escribiendo…`;
  else if (users.length > 2) text = 'Varias personas están escribiendo…';
  $('#typing-indicator').textContent = text;
}

// Contador de caracteres (puntos de código, como el servidor) y botón Enviar.
function updateComposer() {
  const text = $('#message-input').value;
  const count = [...text].length;
  const counter = $('#char-counter');
  counter.textContent = `${formatNumber(count)}/${formatNumber(MAX_CHARS)}`;
  counter.classList.toggle('over', count > MAX_CHARS);
  counter.classList.toggle('near', count > MAX_CHARS * 0.9 && count <= MAX_CHARS);
  $('#send-button').disabled = !currentRoom() || validateText(text) !== '';
}

// Banner de conexión: data-state para el CSS (y los tests), texto para las personas.
function setStatus(name, text) {
  Object.assign($('#connection-status'), { textContent: text }).dataset.state = name;
}

// Total de no leídos en el título de la pestaña: "(3) Chat empresarial".
function updateTitle() {
  const unread = [...state.rooms.values()].reduce((sum, room) => sum + room.unread, 0);
  document.title = unread ? `(${formatNumber(unread)}) Chat empresarial` : 'Chat empresarial';
}

// "Al final" con 40 px de margen: si el usuario está leyendo arriba, no le movemos la lista.
function isAtBottom() {
  const s = $('#message-scroll');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 40;
}
const scrollToBottom = () => { $('#message-scroll').scrollTop = $('#message-scroll').scrollHeight; };

// Aviso no bloqueante. Como mucho 4 a la vez (rate_limited puede enviar muchos errores seguidos).
function toast(text, { kind = 'info', detail = '', action = null } = {}) {
  const box = $('#toasts');
  const item = el('div', `toast toast-${kind}`);
  item.append(el('span', 'toast-text', text));
  if (detail) item.append(el('code', 'toast-detail', detail));
  if (action) item.append(button(action.label, 'link', () => { action.run(); item.remove(); }));
  item.append(button('Cerrar', 'link', () => item.remove()));
  box.append(item);
  while (box.children.length > 4) box.firstElementChild.remove();
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 6000);
}

// ---------- Arranque: conectar eventos del DOM ----------
function init() {
  $('#login-form').addEventListener('submit', authSubmit(() => login($('#username').value.trim(), $('#password').value)));
  $('#register-form').addEventListener('submit', authSubmit(register));
  $('#logout').addEventListener('click', () => logout());
  $('#room-list').addEventListener('click', (event) => {
    const item = event.target.closest('[data-room]');
    if (item) selectRoom(item.dataset.room);
  });
  $('#new-room-form').addEventListener('submit', onCreateRoom);
  $('#new-room-name').addEventListener('input', (e) => { if (!$('#new-room-id').dataset.edited) $('#new-room-id').value = slugify(e.target.value); });
  $('#new-room-id').addEventListener('input', (e) => { e.target.dataset.edited = '1'; });
  $('#invite-form').addEventListener('submit', onInvite);
  $('#message-form').addEventListener('submit', onMessageSubmit);
  $('#message-input').addEventListener('keydown', onInputKeydown);
  $('#message-input').addEventListener('input', onInputChange);
  $('#load-older').addEventListener('click', loadOlder);
  // Si vuelve la red, no esperamos al siguiente intento del backoff.
  window.addEventListener('online', () => { if (state.token && !state.ws) connect(); });

  // ¿Ya había sesión en esta pestaña (recarga)? Entramos directamente.
  if (state.token) startSession().catch((e) => { if (e.status !== 401) logout(e.message); });
}

init();
