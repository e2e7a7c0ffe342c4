'use strict';
// Processor functions for scenario.yml (Artillery's ws engine).
//
// The ws engine sends what a `send` step holds and, without `capture`/`match`, ignores every
// frame that comes back; with them it only looks at the *next* frame, which here may be a
// presence, conversation or message frame instead of the ack. So the frames are read here, by
// a listener of our own on the engine's socket (`context.ws`, a `ws` 7 WebSocket), and acks are
// matched to sends by client_msg_id. The engine itself does the sending.
//
// Custom metrics (Artillery's `counter` and `histogram` events):
//   chat.sends                 send frames the VU made (the next `send` step sends it)
//   chat.acks, chat.send_to_ack        ack frames matched to a send; ms from the send
//   chat.rejected              sends answered by an error frame (with ref) instead
//   chat.unacked               sends with neither when the VU gave up (ack_timeout_ms)
//   chat.errors.<code>         error frames, by code
//   chat.deliveries, chat.send_to_deliver   live message frames from other VUs; ms from the
//                              sender's send (its wall clock, written at the start of the body)
//   chat.echoes, chat.send_to_echo           the VU's own messages coming back to it
//   chat.replayed              message frames before `synced` (the sync's replay), not timed
//   chat.frames.<type>         every frame the listener saw, by type
//   chat.sign_in               ms for POST /v1/dev/token
//   chat.closed_early          sockets the server closed before the VU was done

const { performance } = require('node:perf_hooks');

// Wall-clock ms with sub-ms resolution, comparable across Artillery's worker threads.
function now() {
  return performance.timeOrigin + performance.now();
}

// connect.function: sign in over HTTP, then point the engine's socket at /v1/ws.
function signIn(wsArgs, context, done) {
  const base = wsArgs.target.replace(/^ws/, 'http').replace(/\/+$/, '');
  const userId = context.vars.user_id;
  const t0 = now();
  fetch(`${base}/v1/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: userId })
  })
    .then(async (r) => {
      if (r.status !== 200) throw new Error(`sign-in answered ${r.status}`);
      return r.json();
    })
    .then(({ token }) => {
      context.vars.sign_in_ms = now() - t0;
      const device = `art-${context._uid || 0}`;
      wsArgs.target = `${wsArgs.target.replace(/\/+$/, '')}/v1/ws?device_id=${encodeURIComponent(device)}` +
        `&token=${encodeURIComponent(token)}`;
      done();
    })
    .catch((err) => done(err));
}

function onFrame(st, data) {
  let f;
  try {
    f = JSON.parse(String(data));
  } catch (err) {
    st.events.emit('counter', 'chat.frames.not_json', 1);
    return;
  }
  const ev = st.events;
  ev.emit('counter', `chat.frames.${f.type}`, 1);
  if (f.type === 'ack') {
    const t = st.pending.get(f.client_msg_id);
    if (t === undefined) return;
    st.pending.delete(f.client_msg_id);
    ev.emit('counter', 'chat.acks', 1);
    ev.emit('histogram', 'chat.send_to_ack', now() - t);
  } else if (f.type === 'error') {
    ev.emit('counter', `chat.errors.${f.code}`, 1);
    if (f.ref !== undefined && st.pending.delete(f.ref)) ev.emit('counter', 'chat.rejected', 1);
  } else if (f.type === 'message') {
    const m = f.message;
    if (!st.synced) {
      ev.emit('counter', 'chat.replayed', 1);
      return;
    }
    const sent = parseFloat(m.body);
    const own = m.sender_id === st.user;
    ev.emit('counter', own ? 'chat.echoes' : 'chat.deliveries', 1);
    if (Number.isFinite(sent)) ev.emit('histogram', own ? 'chat.send_to_echo' : 'chat.send_to_deliver', now() - sent);
  } else if (f.type === 'synced') {
    st.synced = true;
  }
  if (st.waiter) st.waiter();
}

// First step after the connect: read every frame from now on.
function watch(context, events, done) {
  const st = { user: context.vars.user_id, pending: new Map(), synced: false, events, waiter: null,
    finished: false, sent: 0 };
  context._chat = st;
  events.emit('histogram', 'chat.sign_in', context.vars.sign_in_ms);
  context.ws.on('message', (data) => onFrame(st, data));
  context.ws.on('close', () => {
    if (!st.finished) events.emit('counter', 'chat.closed_early', 1);
    if (st.waiter) st.waiter();
  });
  done();
}

// Before each `send` step: the frame's client_msg_id and body (send time first), and the clock.
function nextMessage(context, events, done) {
  const st = context._chat;
  const id = `${st.user}-m${st.sent++}`;
  const t = now();
  const head = `${t.toFixed(3)} `;
  context.vars.client_msg_id = id;
  context.vars.body = head + 'x'.repeat(Math.max(0, Number(context.vars.body_bytes) - head.length));
  st.pending.set(id, t);
  events.emit('counter', 'chat.sends', 1);
  done();
}

// Last step: wait for the outstanding acks, at most ack_timeout_ms.
function drain(context, events, done) {
  const st = context._chat;
  const finish = () => {
    if (st.finished) return;
    st.finished = true;
    clearTimeout(timer);
    if (st.pending.size) events.emit('counter', 'chat.unacked', st.pending.size);
    st.pending.clear(); // an ack that comes before the engine closes the socket is not counted too
    done();
  };
  const timer = setTimeout(finish, Number(context.vars.ack_timeout_ms));
  st.waiter = () => {
    if (st.pending.size === 0 || context.ws.readyState !== 1) finish();
  };
  st.waiter();
}

module.exports = { signIn, watch, nextMessage, drain };
