//! The `:authority` etcdctl sends, made acceptable to h2 before h2 reads it.
//!
//! etcdctl 3.4 and other grpc-go clients given an endpoint such as
//! `http://127.0.0.1:2379` send that whole URI as the `:authority` of some
//! calls (`etcdctl endpoint status`, `endpoint hashkv`). etcd serves them;
//! h2 resets such a stream as malformed (hyperium/h2#525, still so in h2
//! 0.4.21) and has no option to relax the check, which runs before any
//! service sees the request. So this filter sits between the socket and h2
//! and rewrites, in the HTTP/2 frames a client sends, an `:authority` that
//! is a whole URI into one that h2 accepts and that names the same host
//! and port.
//!
//! # How, and why it is safe
//!
//! HPACK is stateful: a literal "with incremental indexing" enters both
//! the client's and h2's dynamic tables, later requests refer to it by
//! index, and entries are evicted by size (name + value + 32 octets). The
//! rewritten value therefore keeps the original's exact length: the URI
//! `scheme://host:port[/path]` becomes `host:port` behind a user-info of
//! underscores that pads it to the same number of octets
//! (`http://127.0.0.1:2379` → `______@127.0.0.1:2379`). Both tables stay
//! the same size, so every index the client sends later names the same
//! entry on h2's side, and this filter keeps no HPACK table at all.
//!
//! Everything else passes byte for byte: frames other than HEADERS and its
//! CONTINUATIONs are never held back; a header block without such an
//! authority is released exactly as received; anything malformed (a bad
//! integer, a length past the end, padding longer than the frame) is
//! released untouched for h2 to refuse as it would have. Nothing here may
//! make h2 accept what it would have refused, except this one authority,
//! and a rewritten block is re-framed, so a block is rewritten only if h2
//! would accept its framing: every frame within the smallest frame size
//! an endpoint may advertise (16 KiB), every CONTINUATION on the HEADERS'
//! stream, no more frames than h2 takes for one block, and no more frames
//! after the rewrite than before. HPACK integers are read with h2's bound.
//!
//! What a client can make the filter spend is bounded too: it holds at
//! most one header block of at most six such frames per connection, and
//! decodes only the first `:authority` of a block, only when it is short
//! enough to be an endpoint (`MAX_AUTHORITY_BYTES`).
//!
//! Covered: an `:authority` named by the static table's index 1 (grpc-go,
//! grpc-java and h2 name it so) or by a literal name (grpc's C core). Not
//! covered: a name that refers to a dynamic-table entry (no client is
//! known to do that for `:authority`): such a request stays refused.

use axum::http::uri::Authority;
use bytes::BytesMut;
use std::sync::LazyLock;

use loona_hpack::huffman::HuffmanDecoder;
use parking_lot::Mutex;

/// What an HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const PRIORITY_LEN: usize = 5;
/// The frame size every HTTP/2 endpoint accepts (SETTINGS_MAX_FRAME_SIZE
/// cannot be set lower): a rewritten block goes out in frames of at most
/// this.
const MIN_MAX_FRAME_SIZE: usize = 16_384;
/// A header block of more frames than this is passed on as it comes,
/// unexamined: one HEADERS and h2's least limit of CONTINUATIONs (h2
/// answers more with ENHANCE_YOUR_CALM).
const MAX_BLOCK_FRAMES: usize = 6;
/// An `:authority` longer than this (as sent, Huffman-coded or not) is not
/// looked at: no endpoint URL is that long, and decoding costs CPU.
const MAX_AUTHORITY_BYTES: usize = 128;
/// `:authority` in HPACK's static table (RFC 7541, Appendix A).
const AUTHORITY_INDEX: u64 = 1;
const AUTHORITY: &[u8] = b":authority";

/// The inbound half of a client connection: bytes from the socket go in
/// ([`push`](Self::push)), bytes for h2 come out ([`output`](Self::output))
/// — the same bytes, except for the rewrite above.
#[derive(Default)]
pub(crate) struct InboundFilter {
    state: State,
    /// Bytes ready for h2.
    out: BytesMut,
    /// Header blocks whose authority was rewritten.
    rewritten: u64,
}

#[derive(Default)]
enum State {
    /// Matching the first bytes against the HTTP/2 preface (`seen` so far).
    Preface { seen: usize },
    /// Not HTTP/2 (HTTP/1.1: the JSON gateway, health probes), or gave up:
    /// everything passes.
    #[default]
    Opaque,
    /// Reading a frame header (`have` of its 9 bytes so far).
    FrameHeader { buf: [u8; FRAME_HEADER_LEN], have: usize },
    /// Inside a frame that passes untouched.
    Payload { remaining: usize },
    /// Collecting a header block.
    Block(Box<Block>),
}

/// A header block being collected: its frames as received, so that it can
/// be released unchanged.
struct Block {
    raw: Vec<u8>,
    frames: Vec<FrameSpan>,
    /// Payload bytes of the last frame still to come.
    remaining: usize,
    /// Once the last frame is whole and did not end the block: the next
    /// frame's header, `have` bytes of it so far.
    next: [u8; FRAME_HEADER_LEN],
    have: usize,
}

/// One frame of a header block inside `Block::raw`.
#[derive(Clone, Copy)]
struct FrameSpan {
    flags: u8,
    payload_start: usize,
    payload_len: usize,
}

impl InboundFilter {
    /// A filter for a connection that has sent nothing yet.
    pub(crate) fn new() -> Self {
        InboundFilter { state: State::Preface { seen: 0 }, ..Default::default() }
    }

    /// Whether the connection has shown itself to speak HTTP/2.
    pub(crate) fn is_http2(&self) -> bool {
        !matches!(self.state, State::Preface { .. } | State::Opaque)
    }

    /// How many header blocks had their authority rewritten.
    #[cfg(test)]
    pub(crate) fn rewritten(&self) -> u64 {
        self.rewritten
    }

    /// How many of the next input bytes would pass unchanged and unseen, so
    /// the caller may read them straight into h2's buffer and report them
    /// with [`passed`](Self::passed) instead of [`push`](Self::push)
    /// (`usize::MAX`: all that follow). Zero while output is waiting.
    pub(crate) fn passthrough(&self) -> usize {
        if !self.out.is_empty() {
            return 0;
        }
        match self.state {
            State::Opaque => usize::MAX,
            State::Payload { remaining } => remaining,
            _ => 0,
        }
    }

    /// Records that `n` bytes, at most [`passthrough`](Self::passthrough),
    /// went straight through.
    pub(crate) fn passed(&mut self, n: usize) {
        if let State::Payload { remaining } = &mut self.state {
            *remaining -= n;
            if *remaining == 0 {
                self.state = State::FrameHeader { buf: [0; FRAME_HEADER_LEN], have: 0 };
            }
        }
    }

    /// Bytes ready for h2; the caller takes them from the front.
    pub(crate) fn output(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// The peer closed its side: whatever is held back goes to h2 as it
    /// came (h2 then reports the truncated frame).
    pub(crate) fn finish(&mut self) {
        match std::mem::replace(&mut self.state, State::Opaque) {
            State::Block(block) => {
                self.out.extend_from_slice(&block.raw);
                self.out.extend_from_slice(&block.next[..block.have]);
            }
            State::FrameHeader { buf, have } => self.out.extend_from_slice(&buf[..have]),
            State::Preface { .. } | State::Opaque | State::Payload { .. } => {}
        }
    }

    /// Takes bytes read from the socket.
    pub(crate) fn push(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            if matches!(self.state, State::FrameHeader { have: 0, .. })
                && let Some(used) = self.whole_headers_frame(input)
            {
                input = &input[used..];
                continue;
            }
            let used = match &mut self.state {
                State::Opaque => {
                    self.out.extend_from_slice(input);
                    input.len()
                }
                State::Preface { seen } => {
                    let seen = *seen;
                    let n = (PREFACE.len() - seen).min(input.len());
                    self.out.extend_from_slice(&input[..n]);
                    self.state = if input[..n] != PREFACE[seen..seen + n] {
                        State::Opaque
                    } else if seen + n == PREFACE.len() {
                        State::FrameHeader { buf: [0; FRAME_HEADER_LEN], have: 0 }
                    } else {
                        State::Preface { seen: seen + n }
                    };
                    n
                }
                State::Payload { remaining } => {
                    let n = (*remaining).min(input.len());
                    self.out.extend_from_slice(&input[..n]);
                    self.passed(n);
                    n
                }
                State::FrameHeader { buf, have } => {
                    let n = (FRAME_HEADER_LEN - *have).min(input.len());
                    buf[*have..*have + n].copy_from_slice(&input[..n]);
                    *have += n;
                    if *have == FRAME_HEADER_LEN {
                        let header = *buf;
                        self.start_frame(header, true);
                    }
                    n
                }
                State::Block(block) if block.remaining > 0 => {
                    let n = block.remaining.min(input.len());
                    block.raw.extend_from_slice(&input[..n]);
                    block.remaining -= n;
                    if block.remaining == 0 {
                        self.frame_of_block_done();
                    }
                    n
                }
                State::Block(block) => {
                    let n = (FRAME_HEADER_LEN - block.have).min(input.len());
                    block.next[block.have..block.have + n].copy_from_slice(&input[..n]);
                    block.have += n;
                    if block.have == FRAME_HEADER_LEN {
                        self.continue_block();
                    }
                    n
                }
            };
            input = &input[used..];
        }
    }

    /// A frame header is whole: collect a header block (`collect`), or let
    /// the frame pass.
    fn start_frame(&mut self, header: [u8; FRAME_HEADER_LEN], collect: bool) {
        let (len, kind) = (frame_len(&header), header[3]);
        if collect && kind == HEADERS && len <= MIN_MAX_FRAME_SIZE {
            let mut raw = Vec::with_capacity(FRAME_HEADER_LEN + len);
            raw.extend_from_slice(&header);
            let span = FrameSpan { flags: header[4], payload_start: FRAME_HEADER_LEN, payload_len: len };
            let block = Block { raw, frames: vec![span], remaining: len, next: [0; FRAME_HEADER_LEN], have: 0 };
            self.state = State::Block(Box::new(block));
            if len == 0 {
                self.frame_of_block_done();
            }
            return;
        }
        self.out.extend_from_slice(&header);
        self.state = match len {
            0 => State::FrameHeader { buf: [0; FRAME_HEADER_LEN], have: 0 },
            remaining => State::Payload { remaining },
        };
    }

    /// The last frame of the block being collected is whole.
    fn frame_of_block_done(&mut self) {
        let State::Block(block) = &self.state else { return };
        let last = block.frames[block.frames.len() - 1];
        if last.flags & END_HEADERS == 0 {
            return; // a CONTINUATION follows
        }
        let State::Block(block) = std::mem::replace(&mut self.state, State::Opaque) else { return };
        self.release_block(&block.raw, &block.frames);
        self.state = State::FrameHeader { buf: [0; FRAME_HEADER_LEN], have: 0 };
    }

    /// A whole header block goes to h2: rewritten, or as received.
    fn release_block(&mut self, raw: &[u8], frames: &[FrameSpan]) {
        match self.rewrite(raw, frames) {
            Some(frames) => {
                self.out.extend_from_slice(&frames);
                if self.rewritten == 0 {
                    tracing::debug!("a client sent a whole URI as :authority; served with its host and port");
                }
                self.rewritten += 1;
            }
            None => self.out.extend_from_slice(raw),
        }
    }

    /// Nearly every request is one HEADERS frame read whole with its
    /// header: it is looked at where it lies, without being collected.
    /// How many bytes of `input` (a frame header onwards) it took, if so.
    fn whole_headers_frame(&mut self, input: &[u8]) -> Option<usize> {
        let header: &[u8; FRAME_HEADER_LEN] = input.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
        let len = frame_len(header);
        if header[3] != HEADERS
            || header[4] & END_HEADERS == 0
            || len > MIN_MAX_FRAME_SIZE
            || input.len() < FRAME_HEADER_LEN + len
        {
            return None;
        }
        let span = FrameSpan { flags: header[4], payload_start: FRAME_HEADER_LEN, payload_len: len };
        self.release_block(&input[..FRAME_HEADER_LEN + len], &[span]);
        Some(FRAME_HEADER_LEN + len)
    }

    /// The header of the frame after an unfinished block's last is whole.
    fn continue_block(&mut self) {
        let State::Block(block) = &mut self.state else { return };
        let header = block.next;
        let len = frame_len(&header);
        let same_stream = header[5..] == block.raw[5..FRAME_HEADER_LEN];
        if header[3] == CONTINUATION
            && same_stream
            && len <= MIN_MAX_FRAME_SIZE
            && block.frames.len() < MAX_BLOCK_FRAMES
        {
            let span =
                FrameSpan { flags: header[4], payload_start: block.raw.len() + FRAME_HEADER_LEN, payload_len: len };
            block.raw.extend_from_slice(&header);
            block.frames.push(span);
            block.remaining = len;
            block.have = 0;
            if len == 0 {
                self.frame_of_block_done();
            }
            return;
        }
        // Too many frames, too large, or not a CONTINUATION of this stream
        // (h2 will refuse that): release everything as received, and stop
        // collecting.
        let State::Block(block) = std::mem::replace(&mut self.state, State::Opaque) else { return };
        self.out.extend_from_slice(&block.raw);
        self.start_frame(header, false);
    }

    /// The block's frames (`raw`, laid out as `frames` say) with the
    /// authority rewritten, or `None` to release them unchanged.
    fn rewrite(&mut self, raw: &[u8], frames: &[FrameSpan]) -> Option<Vec<u8>> {
        let payload = |span: &FrameSpan| &raw[span.payload_start..span.payload_start + span.payload_len];
        let first = payload(&frames[0]);
        let mut start = 0;
        let mut pad = 0;
        if frames[0].flags & PADDED != 0 {
            pad = usize::from(*first.first()?);
            start = 1;
        }
        let mut priority: &[u8] = &[];
        if frames[0].flags & PRIORITY != 0 {
            priority = first.get(start..start + PRIORITY_LEN)?;
            start += PRIORITY_LEN;
        }
        let first = first.get(start..first.len().checked_sub(pad)?)?;
        // One frame (nearly every request): scanned where it lies.
        let joined: Vec<u8>;
        let fragment = if frames.len() == 1 {
            first
        } else {
            joined = [first].into_iter().chain(frames[1..].iter().map(payload)).collect::<Vec<_>>().concat();
            &joined[..]
        };
        let fragment = rewrite_fragment(fragment)?;

        let frames_in = frames.len();
        let first = &raw[..FRAME_HEADER_LEN];
        let flags = first[4] & (END_STREAM | PRIORITY);
        let stream_id = &first[5..FRAME_HEADER_LEN];
        let mut out = Vec::with_capacity(fragment.len() + 2 * FRAME_HEADER_LEN + PRIORITY_LEN);
        let mut rest = &fragment[..];
        let mut kind = HEADERS;
        let mut written = 0;
        loop {
            let room = MIN_MAX_FRAME_SIZE - if kind == HEADERS { priority.len() } else { 0 };
            let (chunk, after) = rest.split_at(rest.len().min(room));
            let frame_flags = if kind == HEADERS { flags } else { 0 } | if after.is_empty() { END_HEADERS } else { 0 };
            let len = (chunk.len() + if kind == HEADERS { priority.len() } else { 0 }) as u32;
            out.extend_from_slice(&len.to_be_bytes()[1..]);
            out.extend_from_slice(&[kind, frame_flags]);
            out.extend_from_slice(stream_id);
            if kind == HEADERS {
                out.extend_from_slice(priority);
            }
            out.extend_from_slice(chunk);
            written += 1;
            if after.is_empty() {
                // More frames than the client sent could pass h2's limit
                // of CONTINUATIONs where the original did not.
                return (written <= frames_in).then_some(out);
            }
            rest = after;
            kind = CONTINUATION;
        }
    }
}

fn frame_len(header: &[u8; FRAME_HEADER_LEN]) -> usize {
    (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2])
}

/// The header block fragment with each `:authority` that is a whole URI
/// rewritten; `None` if there is none (or the block does not parse).
fn rewrite_fragment(block: &[u8]) -> Option<Vec<u8>> {
    let mut rewritten: Option<Vec<u8>> = None;
    let mut seen_authority = false;
    let mut copied_to = 0;
    let mut pos = 0;
    while pos < block.len() {
        let first = block[pos];
        if first & 0x80 != 0 {
            // Indexed field: a reference, nothing literal.
            pos = decode_int(block, pos, 7)?.1;
            continue;
        }
        if first & 0xe0 == 0x20 {
            // Dynamic table size update.
            pos = decode_int(block, pos, 5)?.1;
            continue;
        }
        // A literal: with incremental indexing (01), without (0000) or never
        // indexed (0001); a name index, or 0 and a literal name.
        let prefix = if first & 0x40 != 0 { 6 } else { 4 };
        let (name_index, after) = decode_int(block, pos, prefix)?;
        pos = after;
        let is_authority = if name_index == 0 {
            let (name, after) = read_string(block, pos)?;
            pos = after;
            // A Huffman code takes at most 30 bits an octet: a longer
            // string cannot be `:authority`, and is not decoded.
            name.bytes.len() <= 4 * AUTHORITY.len() && name.decoded().as_deref() == Some(AUTHORITY)
        } else {
            name_index == AUTHORITY_INDEX
        };
        let value_start = pos;
        let (value, after) = read_string(block, pos)?;
        pos = after;
        if !is_authority || seen_authority {
            continue;
        }
        // Only the first: h2 refuses a second one anyway.
        seen_authority = true;
        if value.bytes.len() > MAX_AUTHORITY_BYTES {
            continue;
        }
        let Some(fixed) = value.decoded().and_then(|v| same_length_authority(&v)) else { continue };
        let out = rewritten.get_or_insert_with(|| Vec::with_capacity(block.len() + 8));
        out.extend_from_slice(&block[copied_to..value_start]);
        encode_int(out, 0x00, 7, fixed.len() as u64); // H = 0: a raw string
        out.extend_from_slice(&fixed);
        copied_to = pos;
    }
    let mut out = rewritten?;
    out.extend_from_slice(&block[copied_to..]);
    Some(out)
}

/// An HPACK string literal inside a header block.
struct HpackString<'a> {
    huffman: bool,
    bytes: &'a [u8],
}

impl HpackString<'_> {
    /// The octets it stands for; `None` if its Huffman code is invalid.
    fn decoded(&self) -> Option<Vec<u8>> {
        /// One table for every connection (built once: 257 codes).
        static HUFFMAN: LazyLock<Mutex<HuffmanDecoder>> = LazyLock::new(|| Mutex::new(HuffmanDecoder::new()));
        if !self.huffman {
            return Some(self.bytes.to_vec());
        }
        HUFFMAN.lock().decode(self.bytes).ok()
    }
}

fn read_string(block: &[u8], pos: usize) -> Option<(HpackString<'_>, usize)> {
    let huffman = block.get(pos)? & 0x80 != 0;
    let (len, start) = decode_int(block, pos, 7)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    Some((HpackString { huffman, bytes: block.get(start..end)? }, end))
}

/// An HPACK integer with a `prefix`-bit prefix at `pos` (RFC 7541 §5.1),
/// and the position after it. Bounded as h2 bounds it (five octets in all,
/// so at most four after the prefix): a longer one is malformed.
fn decode_int(block: &[u8], pos: usize, prefix: u32) -> Option<(u64, usize)> {
    const MAX_CONTINUATION_OCTETS: u32 = 4;
    let max = (1u64 << prefix) - 1;
    let mut value = u64::from(*block.get(pos)?) & max;
    let mut pos = pos + 1;
    if value < max {
        return Some((value, pos));
    }
    for octet in 0..MAX_CONTINUATION_OCTETS {
        let byte = *block.get(pos)?;
        pos += 1;
        value += u64::from(byte & 0x7f) << (7 * octet);
        if byte & 0x80 == 0 {
            return Some((value, pos));
        }
    }
    None
}

/// Appends `value` as an HPACK integer with a `prefix`-bit prefix, the
/// first byte's other bits being `high`.
fn encode_int(out: &mut Vec<u8>, high: u8, prefix: u32, value: u64) {
    let max = (1u64 << prefix) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// For an authority h2 would refuse that is a whole URI
/// (`scheme://host:port[/path…]`): the same host and port, padded in front
/// with a user-info of underscores to the original's length. `None` for an
/// authority h2 accepts as it is, and for anything else.
fn same_length_authority(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?;
    if text.parse::<Authority>().is_ok() {
        return None;
    }
    let (scheme, rest) = text.split_once("://")?;
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let parsed: Authority = authority.parse().ok()?;
    if authority.contains('@') {
        return None; // a user-info of its own: leave it to h2
    }
    // scheme + "://" is at least 4 octets, so there is room for "_…@".
    let padding = text.len() - authority.len() - 1;
    let fixed = format!("{}@{authority}", "_".repeat(padding));
    let check: Authority = fixed.parse().ok()?;
    (check.host() == parsed.host() && check.port_u16() == parsed.port_u16()).then(|| fixed.into_bytes())
}

#[cfg(test)]
mod tests;
