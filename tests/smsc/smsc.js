#!/usr/bin/env node
// SMPP 3.4 SMSC simulator for the Rust integration tests and benchmarks.
// See README.md in this folder for the environment variables and the
// destination-digit rules. Built on node-smpp 0.5.1 (npm "smpp").
'use strict';

const fs = require('fs');
const smpp = require('smpp');

// ---------------------------------------------------------------- config
const env = process.env;
const PORT = parseInt(env.SMSC_PORT || '0', 10) || 0;
const HOST = env.SMSC_HOST || '127.0.0.1';
const SYSTEM_ID = env.SMSC_SYSTEM_ID !== undefined ? env.SMSC_SYSTEM_ID : 'line';
const PASSWORD = env.SMSC_PASSWORD !== undefined ? env.SMSC_PASSWORD : 'secret';
const LOG_PATH = env.SMSC_LOG || '';
const ID_FORMAT = env.SMSC_ID_FORMAT || 'dec';
const WITH_TLV = (env.SMSC_TLV || '1') !== '0';
const RECEIPT_DELAY_MS = Math.max(0, parseInt(env.SMSC_RECEIPT_DELAY_MS || '0', 10) || 0);
const MO_ON_BIND = env.SMSC_MO_ON_BIND || '';
const MO_TO = env.SMSC_MO_TO || '447700900001';
// A crash at a known point: after accepting this many submits, answer no more
// (those stay unacknowledged, as at a real crash), then SIGKILL ourselves once
// what was answered has gone out. Every message is then accepted exactly once
// or not at all, whatever instant a kill from outside would have hit.
const DIE_AFTER = parseInt(env.SMSC_DIE_AFTER || '0', 10) || 0;
let dying = false;

if (!['dec', 'hex', 'HEX0'].includes(ID_FORMAT)) {
  process.stderr.write(`smsc: unknown SMSC_ID_FORMAT ${ID_FORMAT} (dec|hex|HEX0)\n`);
  process.exit(2);
}

const ESME_ROK = 0x00;
const ESME_RINVCMDID = 0x03;
const ESME_RINVBNDSTS = 0x04;
const ESME_RALYBND = 0x05;
const ESME_RINVDSTADR = 0x0B;
const ESME_RBINDFAIL = 0x0D;
const ESME_RTHROTTLED = 0x58;

const MESSAGE_STATE = { ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8 };

// We decode short_message ourselves (only when logging), so switch off
// node-smpp's decode filters for incoming submit_sm: short_message and
// message_payload then stay raw Buffers, and the hot path skips the
// charset work and the time parsing of schedule/validity.
const submitParams = smpp.commands.submit_sm.params;
submitParams.short_message.filter = null;
submitParams.schedule_delivery_time.filter = null;
submitParams.validity_period.filter = null;
smpp.tlvs.message_payload.filter = null;

// ---------------------------------------------------------------- output
function out(line) {
  // fs.writeSync on fd 1 is synchronous, so the line is flushed at once.
  try { fs.writeSync(1, line + '\n'); } catch (_) { /* parent gone */ }
}

let logFd = null;
if (LOG_PATH) {
  logFd = fs.openSync(LOG_PATH, 'a'); // O_APPEND: survives restarts, never truncates
}

// ---------------------------------------------------------------- ids
// Counter base from the clock: 100 ids per ms of headroom, so a restarted
// simulator starts above every id the previous one handed out.
let counter = Date.now() * 100;
const TWO_32 = 4294967296;

function nextIds() {
  const n = ++counter;
  switch (ID_FORMAT) {
    case 'hex':
      return { resp: n.toString(16), receipt: String(n) };
    case 'HEX0': {
      // Keep the value below 2^32 so the 10-char padding really adds zeros.
      const v = n % TWO_32;
      return { resp: v.toString(16).toUpperCase().padStart(10, '0'), receipt: v.toString(16) };
    }
    default: {
      const s = String(n);
      return { resp: s, receipt: s };
    }
  }
}

// ---------------------------------------------------------------- stats
const stats = { accepted: 0, receipts: 0, receipt_acks: 0, unbinds: 0 };
let lastStats = '';
function statsLine() {
  return `stats accepted=${stats.accepted} receipts=${stats.receipts} receipt_acks=${stats.receipt_acks} unbinds=${stats.unbinds}`;
}
setInterval(() => {
  const line = statsLine();
  if (line !== lastStats) {
    lastStats = line;
    out(line);
  }
}, 1000).unref();

// ---------------------------------------------------------------- text
const GSM_BASIC = '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1BÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
  '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXT = { 0x0A: '\f', 0x14: '^', 0x28: '{', 0x29: '}', 0x2F: '\\', 0x3C: '[', 0x3D: '~', 0x3E: ']', 0x40: '|', 0x65: '€' };

function decodeGsm(buf) {
  let s = '';
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i] & 0x7f;
    if (b === 0x1b && i + 1 < buf.length) {
      const e = buf[++i] & 0x7f;
      s += GSM_EXT[e] !== undefined ? GSM_EXT[e] : GSM_BASIC[e];
    } else {
      s += GSM_BASIC[b];
    }
  }
  return s;
}

function decodeText(buf, dataCoding) {
  switch (dataCoding & 0x0f) {
    case 0x00: return decodeGsm(buf);                 // SMSC default = GSM 03.38, one septet per octet
    case 0x01: return buf.toString('latin1');         // IA5 / ASCII
    case 0x08: {                                      // UCS-2 / UTF-16BE
      const even = buf.length & ~1;
      const le = Buffer.from(buf.subarray(0, even));
      le.swap16();
      return le.toString('utf16le');
    }
    default: return buf.toString('latin1');           // 0x03 Latin-1 and anything else
  }
}

// Split a raw short_message into {udh:{ref,total,seq}|null, body:Buffer}.
function splitUdh(buf, esmClass) {
  if (!(esmClass & 0x40) || buf.length === 0) return { udh: null, body: buf };
  const udhl = buf[0];
  let udh = null;
  let i = 1;
  const end = Math.min(buf.length, 1 + udhl);
  while (i + 1 < end) {
    const iei = buf[i];
    const len = buf[i + 1];
    const d = i + 2;
    if (iei === 0x00 && len === 3 && d + 3 <= end) {
      udh = { ref: buf[d], total: buf[d + 1], seq: buf[d + 2] };
    } else if (iei === 0x08 && len === 4 && d + 4 <= end) {
      udh = { ref: (buf[d] << 8) | buf[d + 1], total: buf[d + 2], seq: buf[d + 3] };
    }
    i = d + len;
  }
  return { udh, body: buf.subarray(1 + udhl) };
}

function rawMessage(pdu) {
  const sm = pdu.short_message;
  if (Buffer.isBuffer(sm) && sm.length > 0) return sm;
  if (Buffer.isBuffer(pdu.message_payload)) return pdu.message_payload;
  return Buffer.isBuffer(sm) ? sm : Buffer.alloc(0);
}

// ---------------------------------------------------------------- receipts
function two(n) { return n < 10 ? '0' + n : String(n); }
function smppDate(d) { // YYMMDDhhmm, UTC
  return two(d.getUTCFullYear() % 100) + two(d.getUTCMonth() + 1) + two(d.getUTCDate()) +
    two(d.getUTCHours()) + two(d.getUTCMinutes());
}

const ERR = { DELIVRD: '000', ENROUTE: '000', UNDELIV: '001', REJECTD: '002', EXPIRED: '003' };

function receiptPdu(sub, stat) {
  const text = `id:${sub.receiptId} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} ` +
    `submit date:${sub.submitDate} done date:${smppDate(new Date())} stat:${stat} err:${ERR[stat]} text:`;
  const opts = {
    source_addr_ton: sub.dest_addr_ton,
    source_addr_npi: sub.dest_addr_npi,
    source_addr: sub.destination_addr,
    dest_addr_ton: sub.source_addr_ton,
    dest_addr_npi: sub.source_addr_npi,
    destination_addr: sub.source_addr,
    esm_class: 0x04,
    data_coding: 0,
    short_message: Buffer.from(text, 'latin1'),
  };
  if (WITH_TLV) {
    // SMPP 3.4 §5.3.2.12: the TLV carries the id exactly as submit_sm_resp gave it.
    opts.receipted_message_id = sub.respId;
    opts.message_state = MESSAGE_STATE[stat];
  }
  return new smpp.PDU('deliver_sm', opts);
}

// ---------------------------------------------------------------- sessions
const sessions = new Set(); // bound sessions

function canReceive(s) { return s.bound && s.bindType !== 'bind_transmitter' && !s.closed; }

// Pick where a receipt goes: the submitting session if it can still take
// deliver_sm, otherwise any other bound receiver/transceiver of the same system_id.
function receiptTarget(origin) {
  if (canReceive(origin)) return origin;
  for (const s of sessions) if (canReceive(s) && s.systemId === origin.systemId) return s;
  return null;
}

function send(session, pdu, cb) {
  if (session.closed) return false;
  // Batch all PDUs written in one tick into a single writev.
  if (!session.corked) {
    session.corked = true;
    session.socket.cork();
    process.nextTick(uncork, session);
  }
  try {
    return session.send(pdu, cb);
  } catch (e) {
    return false;
  }
}
function uncork(session) {
  session.corked = false;
  session.socket.uncork();
}

function sendReceipt(origin, sub, stat) {
  const target = receiptTarget(origin);
  if (!target) return;
  if (send(target, receiptPdu(sub, stat))) stats.receipts++;
}

function scheduleReceipts(session, sub, stats_) {
  const fire = () => { for (const st of stats_) sendReceipt(session, sub, st); };
  if (RECEIPT_DELAY_MS > 0) setTimeout(fire, RECEIPT_DELAY_MS); else fire();
}

const throttleCounts = new Map(); // destination_addr -> submits seen (rule 95)

function handleSubmit(session, pdu) {
  if (dying) return;
  if (!session.bound || session.bindType === 'bind_receiver') {
    send(session, pdu.response({ command_status: ESME_RINVBNDSTS }));
    return;
  }
  const dest = pdu.destination_addr || '';
  const rule = dest.slice(-2);
  let stat = 'DELIVRD';
  switch (rule) {
    case '91': stat = 'UNDELIV'; break;
    case '92': stat = 'REJECTD'; break;
    case '93': stat = 'EXPIRED'; break;
    case '94':
      send(session, pdu.response({ command_status: ESME_RINVDSTADR }));
      return;
    case '95': {
      const seen = (throttleCounts.get(dest) || 0) + 1;
      throttleCounts.set(dest, seen);
      if (seen <= 2) {
        send(session, pdu.response({ command_status: ESME_RTHROTTLED }));
        return;
      }
      break;
    }
    default: break;
  }

  const ids = nextIds();
  const addresses = {
    source_addr: pdu.source_addr,
    source_addr_ton: pdu.source_addr_ton,
    source_addr_npi: pdu.source_addr_npi,
    destination_addr: dest,
    dest_addr_ton: pdu.dest_addr_ton,
    dest_addr_npi: pdu.dest_addr_npi,
  };
  const sub = {
    receiptId: ids.receipt,
    respId: ids.resp,
    submitDate: smppDate(new Date()),
    ...addresses,
  };

  if (logFd !== null) {
    const raw = rawMessage(pdu);
    const { udh, body } = splitUdh(raw, pdu.esm_class);
    const rec = {
      at_ms: Date.now(),
      message_id: ids.resp,
      receipt_id: ids.receipt,
      ...addresses,
      data_coding: pdu.data_coding,
      esm_class: pdu.esm_class,
      registered_delivery: pdu.registered_delivery,
      udh,
      text: decodeText(body, pdu.data_coding),
    };
    fs.appendFileSync(logFd, JSON.stringify(rec) + '\n');
  }
  stats.accepted++;

  const resp = pdu.response({ message_id: ids.resp });
  if (rule === '96') {
    // Race: the final receipt reaches the client before the submit_sm_resp.
    sendReceipt(session, sub, 'DELIVRD');
    send(session, resp);
    return;
  }
  send(session, resp);
  scheduleReceipts(session, sub, rule === '97' ? ['ENROUTE', 'DELIVRD'] : [stat]);
  if (DIE_AFTER > 0 && stats.accepted >= DIE_AFTER) {
    dying = true;
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), 300);
  }
}

function sendMo(session) {
  const isGsm = smpp.encodings.ASCII.match(MO_ON_BIND);
  const body = isGsm ? smpp.gsmCoder.encode(MO_ON_BIND, 0) : Buffer.from(MO_ON_BIND, 'utf16le').swap16();
  const opts = {
    source_addr_ton: 1, source_addr_npi: 1, source_addr: '447400123456',
    dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: MO_TO,
    esm_class: 0, data_coding: isGsm ? 0 : 8,
  };
  if (body.length <= 254) opts.short_message = body;
  else { opts.short_message = Buffer.alloc(0); opts.message_payload = body; }
  send(session, new smpp.PDU('deliver_sm', opts));
}

function handleBind(session, pdu) {
  if (session.bound) {
    send(session, pdu.response({ command_status: ESME_RALYBND }));
    return;
  }
  if (pdu.system_id !== SYSTEM_ID || pdu.password !== PASSWORD) {
    send(session, pdu.response({ command_status: ESME_RBINDFAIL }), () => closeSession(session));
    return;
  }
  session.bound = true;
  session.bindType = pdu.command;
  session.systemId = pdu.system_id;
  sessions.add(session);
  send(session, pdu.response({ system_id: 'smsc' }));
  if (MO_ON_BIND && pdu.command !== 'bind_transmitter') sendMo(session);
}

function closeSession(session) {
  if (session.closed) return;
  session.closed = true;
  sessions.delete(session);
  try { session.close(); } catch (_) { /* ignore */ }
}

function onPdu(session, pdu) {
  switch (pdu.command) {
    case 'submit_sm': handleSubmit(session, pdu); break;
    case 'deliver_sm_resp': stats.receipt_acks++; break;
    case 'enquire_link': send(session, pdu.response()); break;
    case 'bind_transceiver':
    case 'bind_transmitter':
    case 'bind_receiver': handleBind(session, pdu); break;
    case 'unbind':
      stats.unbinds++;
      send(session, pdu.response(), () => closeSession(session));
      sessions.delete(session);
      session.bound = false;
      break;
    case 'unknown': send(session, pdu.response()); break; // generic_nack ESME_RINVCMDID
    default:
      if (!pdu.isResponse()) send(session, pdu.response({ command_status: ESME_RINVCMDID }));
      break; // other responses (enquire_link_resp, generic_nack, ...) are ignored
  }
}

const server = smpp.createServer((session) => {
  session.bound = false;
  session.closed = false;
  session.corked = false;
  try { session.socket.setNoDelay(true); } catch (_) { /* ignore */ }
  session.on('pdu', (pdu) => onPdu(session, pdu));
  session.on('error', (e) => {
    // Socket errors (ECONNRESET, EPIPE) and PDU parse errors: drop the session.
    if (e && e.code !== 'ECONNRESET' && e.code !== 'EPIPE') process.stderr.write(`smsc: session error: ${e.stack || e}\n`);
    session.closed = true;
    sessions.delete(session);
    try { session.destroy(); } catch (_) { /* ignore */ }
  });
  session.on('close', () => {
    session.closed = true;
    sessions.delete(session);
  });
});

server.on('error', (e) => {
  process.stderr.write(`smsc: server error: ${e.message}\n`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  out(`listening ${server.address().port}`);
});

function shutdown() {
  out(statsLine());
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
