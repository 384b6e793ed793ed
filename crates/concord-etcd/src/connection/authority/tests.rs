//! The filter against HPACK as a real decoder reads it (loona-hpack's):
//! what it rewrites, that later indices still name the same entries, and
//! that everything else — other frames, other headers, HTTP/1.1, malformed
//! input, any split of the input — passes byte for byte.

use loona_hpack::Decoder;
use proptest::prelude::*;

use super::*;

/// `http://127.0.0.1:2379` in HPACK's Huffman code (encoded with Python's
/// `hpack` package; the test below decodes it back).
const HUFFMAN_URI: &[u8] = &[0x9d, 0x29, 0xae, 0xe3, 0x0c, 0x04, 0x4e, 0xae, 0x05, 0xc0, 0xb8, 0x6e, 0x09, 0x97, 0x5f];
/// `:authority` in Huffman code.
const HUFFMAN_AUTHORITY: &[u8] = &[0xb8, 0x3b, 0x53, 0x39, 0xec, 0x32, 0x7d, 0x7f];

fn raw_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, 0x00, 7, s.len() as u64);
    out.extend_from_slice(s);
}

fn huffman_string(out: &mut Vec<u8>, code: &[u8]) {
    encode_int(out, 0x80, 7, code.len() as u64);
    out.extend_from_slice(code);
}

/// The block of a first gRPC request as grpc-go encodes it: method and
/// scheme from the static table, the rest literals with incremental
/// indexing (name from the static table), the authority in Huffman code.
fn first_request_block() -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
    b.push(0x44); // :path, literal with incremental indexing, name index 4
    raw_string(&mut b, b"/etcdserverpb.Maintenance/Status");
    b.push(0x41); // :authority (index 1), incremental indexing
    huffman_string(&mut b, HUFFMAN_URI);
    b.push(0x5f); // content-type (index 31)
    raw_string(&mut b, b"application/grpc");
    b.push(0x40); // a new name
    raw_string(&mut b, b"te");
    raw_string(&mut b, b"trailers");
    b
}

/// The next request on the connection: everything by dynamic index (the
/// newest entry is 62).
fn second_request_block() -> Vec<u8> {
    vec![0x83, 0x86, 0xc1, 0xc0, 0xbf, 0xbe]
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings() -> Vec<u8> {
    frame(0x4, 0, 0, &[0x00, 0x03, 0x00, 0x00, 0x00, 0x64])
}

fn data(stream: u32, len: usize) -> Vec<u8> {
    frame(0x0, END_STREAM, stream, &vec![0xab; len])
}

fn connection(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut all = PREFACE.to_vec();
    for p in parts {
        all.extend_from_slice(p);
    }
    all
}

/// What the filter hands to h2 for `input` pushed in pieces of `sizes`
/// (cycled), and how many blocks it rewrote.
fn filtered(input: &[u8], sizes: &[usize]) -> (Vec<u8>, u64) {
    let mut filter = InboundFilter::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        // Like the connection: straight through when the filter allows it.
        let pass = filter.passthrough().min(size);
        if pass > 0 {
            out.extend_from_slice(&rest[..pass]);
            filter.passed(pass);
            rest = &rest[pass..];
            continue;
        }
        filter.push(&rest[..size]);
        out.extend_from_slice(&filter.output().split());
        rest = &rest[size..];
    }
    filter.finish();
    out.extend_from_slice(&filter.output().split());
    (out, filter.rewritten())
}

/// The frames in an HTTP/2 byte stream after the preface.
fn frames(stream: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut rest = &stream[PREFACE.len()..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        let stream = u32::from_be_bytes(rest[5..9].try_into().unwrap());
        frames.push((rest[3], rest[4], stream, rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    frames
}

type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// Every header list in the stream, decoded in order by one decoder (as h2
/// would), with the priority fields of each HEADERS frame.
fn header_lists(stream: &[u8]) -> Vec<(Headers, Vec<u8>)> {
    let mut decoder = Decoder::new();
    let mut lists = Vec::new();
    let mut block = Vec::new();
    let mut priority = Vec::new();
    for (kind, flags, _, payload) in frames(stream) {
        match kind {
            HEADERS => {
                let mut start = 0;
                let mut end = payload.len();
                if flags & PADDED != 0 {
                    start = 1;
                    end -= usize::from(payload[0]);
                }
                if flags & PRIORITY != 0 {
                    priority = payload[start..start + PRIORITY_LEN].to_vec();
                    start += PRIORITY_LEN;
                }
                block.extend_from_slice(&payload[start..end]);
            }
            CONTINUATION => block.extend_from_slice(&payload),
            _ => continue,
        }
        if flags & END_HEADERS != 0 {
            lists.push((decoder.decode(&block).unwrap(), std::mem::take(&mut priority)));
            block.clear();
        }
    }
    lists
}

fn authority(headers: &Headers) -> &[u8] {
    &headers.iter().find(|(n, _)| n == b":authority").unwrap().1
}

#[test]
fn the_huffman_constants_say_what_they_claim() {
    let mut decoder = HuffmanDecoder::new();
    assert_eq!(decoder.decode(HUFFMAN_URI).unwrap(), b"http://127.0.0.1:2379");
    assert_eq!(decoder.decode(HUFFMAN_AUTHORITY).unwrap(), AUTHORITY);
}

#[test]
fn a_uri_authority_is_rewritten_and_later_indices_name_the_same_entries() {
    let input = connection(&[
        settings(),
        frame(HEADERS, END_HEADERS, 1, &first_request_block()),
        data(1, 20),
        frame(HEADERS, END_HEADERS, 3, &second_request_block()),
        data(3, 20),
    ]);
    let (out, rewritten) = filtered(&input, &[input.len()]);
    assert_eq!(rewritten, 1);
    let before = header_lists(&input);
    let after = header_lists(&out);
    assert_eq!(authority(&before[0].0), b"http://127.0.0.1:2379");
    assert_eq!(authority(&after[0].0), b"______@127.0.0.1:2379");
    // The second request refers to the entries by index: they are the
    // rewritten authority and the same other headers.
    assert_eq!(after[1].0, after[0].0, "later indices name the entries the client meant");
    for (b, a) in before[0].0.iter().zip(&after[0].0) {
        if b.0 != b":authority" {
            assert_eq!(a, b);
        }
    }
    // The other frames pass as they were.
    let (fi, fo) = (frames(&input), frames(&out));
    assert_eq!(fi.len(), fo.len());
    for (i, o) in fi.iter().zip(&fo) {
        if i.0 != HEADERS || i.2 != 1 {
            assert_eq!(i, o);
        }
    }
}

#[test]
fn padding_priority_continuations_and_end_stream_are_kept() {
    let block = first_request_block();
    let (head, tail) = block.split_at(40); // the split falls inside the authority
    let mut payload = vec![3]; // pad length
    payload.extend_from_slice(&[0x80, 0, 0, 1, 15]); // exclusive, depends on 1, weight 15
    payload.extend_from_slice(head);
    payload.extend_from_slice(&[0, 0, 0]);
    let input = connection(&[
        frame(HEADERS, END_STREAM | PADDED | PRIORITY, 5, &payload),
        frame(CONTINUATION, 0, 5, &tail[..3]),
        frame(CONTINUATION, END_HEADERS, 5, &tail[3..]),
        frame(HEADERS, END_HEADERS, 7, &second_request_block()),
    ]);
    for sizes in [vec![input.len()], vec![1], vec![7, 3, 11]] {
        let (out, rewritten) = filtered(&input, &sizes);
        assert_eq!(rewritten, 1);
        let fo = frames(&out);
        assert_eq!((fo[0].0, fo[0].1 & (END_STREAM | PRIORITY | PADDED), fo[0].2), (HEADERS, END_STREAM | PRIORITY, 5));
        let lists = header_lists(&out);
        assert_eq!(lists[0].1, [0x80, 0, 0, 1, 15], "priority kept");
        assert_eq!(authority(&lists[0].0), b"______@127.0.0.1:2379");
        assert_eq!(lists[1].0, lists[0].0);
    }
}

#[test]
fn a_literal_name_and_a_raw_value_are_rewritten_too() {
    for name_huffman in [false, true] {
        let mut block = vec![0x82, 0x86, 0x84]; // GET, http, /
        block.push(0x00); // literal without indexing, new name
        if name_huffman {
            huffman_string(&mut block, HUFFMAN_AUTHORITY);
        } else {
            raw_string(&mut block, AUTHORITY);
        }
        raw_string(&mut block, b"https://etcd.example:2379/v3/kv");
        let input = connection(&[frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)]);
        let (out, rewritten) = filtered(&input, &[5]);
        assert_eq!(rewritten, 1);
        assert_eq!(authority(&header_lists(&out)[0].0), b"_____________@etcd.example:2379");
    }
}

#[test]
fn authorities_h2_accepts_and_values_that_are_not_uris_pass_byte_for_byte() {
    for value in [
        &b"127.0.0.1:2379"[..],
        b"etcd.example",
        b"#initially=[http://a:1]",
        b"http://bad host:1",
        b"http://user@host:1",
        b"http://",
        b"\xff\xfe",
    ] {
        let mut block = vec![0x83, 0x86, 0x41];
        raw_string(&mut block, value);
        let input = connection(&[frame(HEADERS, END_HEADERS, 1, &block)]);
        assert_eq!(filtered(&input, &[3]), (input.clone(), 0), "{}", String::from_utf8_lossy(value));
    }
}

#[test]
fn malformed_blocks_pass_untouched_for_h2_to_refuse() {
    let mut long_padding = vec![200];
    long_padding.extend_from_slice(&first_request_block());
    let cases = [
        // An integer that never ends.
        frame(HEADERS, END_HEADERS, 1, &[0x41, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        // A string longer than the block.
        frame(HEADERS, END_HEADERS, 1, &[0x41, 0x7f, 0x10, b'h']),
        // Padding longer than the frame.
        frame(HEADERS, END_HEADERS | PADDED, 1, &long_padding),
        // A priority field cut short.
        frame(HEADERS, END_HEADERS | PRIORITY, 1, &[0x80, 0]),
        // A bad Huffman code where the value should be.
        frame(HEADERS, END_HEADERS, 1, &[0x41, 0x82, 0xff, 0xff]),
    ];
    for case in cases {
        let input = connection(&[case]);
        assert_eq!(filtered(&input, &[4]), (input.clone(), 0));
    }
    // A block interrupted by another frame: released as received.
    let block = first_request_block();
    let input = connection(&[
        frame(HEADERS, 0, 1, &block[..10]),
        data(1, 5),
        frame(CONTINUATION, END_HEADERS, 1, &block[10..]),
    ]);
    assert_eq!(filtered(&input, &[6]), (input.clone(), 0));
}

#[test]
fn a_block_of_up_to_six_frames_is_rewritten_and_more_pass_unexamined() {
    let mut big = first_request_block();
    big.push(0x40);
    raw_string(&mut big, b"x-big");
    raw_string(&mut big, &vec![b'v'; 20_000]);
    let chunks: Vec<_> = big.chunks(16_384).collect();
    let mut frames = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        frames.push(frame(kind, if i + 1 == chunks.len() { END_HEADERS } else { 0 }, 1, chunk));
    }
    // Within the limits: examined and rewritten (in as many frames).
    let stream = connection(&frames);
    let (out, rewritten) = filtered(&stream, &[1000]);
    assert_eq!(rewritten, 1);
    assert_eq!(authority(&header_lists(&out)[0].0), b"______@127.0.0.1:2379");
    assert!(super::tests::frames(&out).iter().all(|f| f.3.len() <= MIN_MAX_FRAME_SIZE));
    assert_eq!(super::tests::frames(&out).len(), super::tests::frames(&stream).len());
    // Seven frames (h2 refuses more than five CONTINUATIONs): as it came.
    for _ in 0..(MAX_BLOCK_FRAMES + 1 - frames.len()) {
        frames.insert(1, frame(CONTINUATION, 0, 1, &[0x83; 100]));
    }
    let stream = connection(&frames);
    assert_eq!(filtered(&stream, &[4096]), (stream.clone(), 0));
}

/// A rewrite re-frames the block: it must not turn framing h2 refuses into
/// framing it accepts.
#[test]
fn framing_h2_refuses_is_never_rewritten() {
    let block = first_request_block();
    // A CONTINUATION on another stream.
    let other_stream =
        connection(&[frame(HEADERS, 0, 1, &block[..10]), frame(CONTINUATION, END_HEADERS, 3, &block[10..])]);
    assert_eq!(filtered(&other_stream, &[7]), (other_stream.clone(), 0));
    // A frame larger than the 16 KiB every endpoint accepts.
    let mut padded = vec![0x20; 17_000]; // dynamic table size updates (to 0)
    padded.extend_from_slice(&block);
    let oversized = connection(&[frame(HEADERS, END_HEADERS, 1, &padded)]);
    assert_eq!(filtered(&oversized, &[5000]), (oversized.clone(), 0));
    // A rewrite that would need one frame more than the client sent: the
    // raw value is longer than its Huffman code.
    let mut full = block.clone();
    full.push(0x40);
    raw_string(&mut full, b"x-fill");
    let fill = MIN_MAX_FRAME_SIZE - full.len() - 3;
    raw_string(&mut full, &vec![b'f'; fill]);
    assert!(full.len() <= MIN_MAX_FRAME_SIZE);
    let tight = connection(&[frame(HEADERS, END_HEADERS, 1, &full)]);
    assert_eq!(filtered(&tight, &[4096]), (tight.clone(), 0));
}

#[test]
fn integers_are_bounded_as_h2_bounds_them() {
    // The authority's length in five octets after the prefix (h2 allows
    // four): malformed, passed on for h2 to refuse.
    let uri = format!("http://127.0.0.1:2379/{}", "x".repeat(120));
    assert_eq!(uri.len(), 142);
    let mut block = vec![0x83, 0x86, 0x41, 0x7f];
    block.extend_from_slice(&[0x8f, 0x80, 0x80, 0x80, 0x00]); // 127 + 15 = 142
    block.extend_from_slice(uri.as_bytes());
    let input = connection(&[frame(HEADERS, END_HEADERS, 1, &block)]);
    assert_eq!(filtered(&input, &[64]), (input.clone(), 0));
    // The same length in one octet after the prefix: read, and too long to
    // be looked at (an endpoint is at most MAX_AUTHORITY_BYTES).
    let mut block = vec![0x83, 0x86, 0x41, 0x7f, 0x0f];
    block.extend_from_slice(uri.as_bytes());
    let input = connection(&[frame(HEADERS, END_HEADERS, 1, &block)]);
    assert_eq!(filtered(&input, &[64]), (input.clone(), 0));
}

#[test]
fn only_the_first_authority_of_a_block_is_looked_at() {
    let mut block = vec![0x83, 0x86, 0x01]; // :authority without indexing
    raw_string(&mut block, b"127.0.0.1:2379");
    block.push(0x01);
    raw_string(&mut block, b"http://127.0.0.1:2379");
    let input = connection(&[frame(HEADERS, END_HEADERS, 1, &block)]);
    assert_eq!(filtered(&input, &[64]), (input.clone(), 0));
}

#[test]
fn http1_and_anything_without_the_preface_pass_untouched() {
    let request = b"POST /v3/kv/put HTTP/1.1\r\nHost: http://127.0.0.1:2379\r\n\r\n{}".to_vec();
    assert_eq!(filtered(&request, &[1]), (request.clone(), 0));
    let mut almost = PREFACE[..20].to_vec();
    almost.extend_from_slice(b"GET");
    assert_eq!(filtered(&almost, &[2]), (almost.clone(), 0));
}

#[test]
fn a_stream_cut_short_is_released_as_received() {
    let full = connection(&[frame(HEADERS, END_HEADERS, 1, &first_request_block())]);
    for cut in [PREFACE.len() + 4, PREFACE.len() + 20, full.len() - 1] {
        let input = &full[..cut];
        assert_eq!(filtered(input, &[3]), (input.to_vec(), 0));
    }
}

#[test]
fn the_same_length_authority() {
    let fixed = |s: &str| same_length_authority(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
    assert_eq!(fixed("http://127.0.0.1:2379").as_deref(), Some("______@127.0.0.1:2379"));
    assert_eq!(fixed("https://[::1]:2379/").as_deref(), Some("________@[::1]:2379"));
    assert_eq!(fixed("unix+tcp://h:1?x#y").as_deref(), Some("______________@h:1"));
    for s in ["127.0.0.1:2379", "http://", "://h:1", "ht tp://h:1", "http://h:1:2", "http://u@h:1"] {
        assert_eq!(fixed(s), None, "{s}");
    }
}

fn arbitrary_frame() -> impl Strategy<Value = Vec<u8>> {
    (0u8..12, any::<u8>(), 0u32..8, prop::collection::vec(any::<u8>(), 0..64))
        .prop_map(|(kind, flags, stream, payload)| frame(kind, flags, stream, &payload))
}

proptest! {
    /// Nothing changes unless a rewrite is counted, whatever the frames and
    /// however the input is split; the filter never panics.
    #[test]
    fn arbitrary_frames_pass_unchanged(
        frames in prop::collection::vec(arbitrary_frame(), 0..12),
        sizes in prop::collection::vec(1usize..40, 1..6),
    ) {
        let input = connection(&frames);
        let (out, rewritten) = filtered(&input, &sizes);
        if rewritten == 0 {
            prop_assert_eq!(out, input);
        }
    }

    /// Arbitrary bytes, as a client could send anything: no panic, and
    /// without a rewrite, the same bytes.
    #[test]
    fn arbitrary_bytes_pass_unchanged(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        sizes in prop::collection::vec(1usize..40, 1..6),
    ) {
        let input = connection(&[bytes]);
        let (out, rewritten) = filtered(&input, &sizes);
        if rewritten == 0 {
            prop_assert_eq!(out, input);
        }
    }

    /// A rewritten stream is the same whatever the split.
    #[test]
    fn the_split_does_not_matter(sizes in prop::collection::vec(1usize..64, 1..6)) {
        let input = connection(&[
            settings(),
            frame(HEADERS, END_HEADERS, 1, &first_request_block()),
            data(1, 100),
            frame(HEADERS, END_HEADERS, 3, &second_request_block()),
        ]);
        prop_assert_eq!(filtered(&input, &sizes), filtered(&input, &[input.len()]));
    }
}
