//! The reader against hyper's client on a corpus of answers, and on any
//! bytes (property tests).

use super::*;

use http_body_util::{BodyExt, Empty};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads a whole answer from `raw` (the connection's bytes up to its
/// close), as a client would: interim heads skipped, the body by its
/// framing.
fn read_whole(raw: &[u8], head_request: bool) -> Result<(Head, Bytes), ReadError> {
    let mut buf = BytesMut::from(raw);
    let head = loop {
        let Some(head) = parse_head(&mut buf, head_request)? else {
            return Err(ReadError::CutShort);
        };
        if !head.is_interim() {
            break head;
        }
    };
    let body = match head.framing {
        Framing::Empty => Bytes::new(),
        Framing::UntilClose => buf.split().freeze(),
        Framing::Length(n) => {
            let n = usize::try_from(n).map_err(|_| ReadError::CutShort)?;
            if buf.len() < n {
                return Err(ReadError::CutShort);
            }
            buf.split_to(n).freeze()
        }
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::default();
            let mut body = BytesMut::new();
            loop {
                match dec.decode(&mut buf)? {
                    Decoded::Data(d) => body.extend_from_slice(&d),
                    Decoded::Done => break,
                    Decoded::NeedMore => return Err(ReadError::CutShort),
                }
            }
            body.freeze()
        }
    };
    Ok((head, body))
}

/// What a client made of an answer: status, header fields in order, body.
type Outcome = Result<(u16, Vec<(String, Vec<u8>)>, Vec<u8>), ()>;

fn ours(raw: &[u8], head_request: bool) -> Outcome {
    let (head, body) = read_whole(raw, head_request).map_err(|_| ())?;
    let headers = head
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    Ok((head.status.as_u16(), headers, body.to_vec()))
}

/// hyper's client, over loopback, from a server that writes `raw` and closes.
async fn hyper_reads(raw: &'static [u8], head_request: bool) -> Outcome {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            req.extend_from_slice(&buf[..n]);
        }
        let _ = s.write_all(raw).await;
        let _ = s.shutdown().await;
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let method = if head_request { "HEAD" } else { "GET" };
    let req = http::Request::builder()
        .method(method)
        .uri("/")
        .header("host", "upstream")
        .body(Empty::new())
        .unwrap();
    let outcome = async {
        let res = send.send_request(req).await.map_err(|_| ())?;
        let status = res.status().as_u16();
        // The one deliberate difference: beside Transfer-Encoding, a
        // Content-Length is dropped (RFC 9112 §6.3 has a proxy remove it),
        // which hyper's client leaves to its user.
        let chunked = res.headers().contains_key(http::header::TRANSFER_ENCODING);
        let headers = res
            .headers()
            .iter()
            .filter(|(k, _)| !(chunked && *k == http::header::CONTENT_LENGTH))
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let body = res.into_body().collect().await.map_err(|_| ())?.to_bytes();
        Ok((status, headers, body.to_vec()))
    }
    .await;
    server.abort();
    outcome
}

/// Answers, each read by both; `true` for a `HEAD` request.
const CORPUS: &[(&str, &[u8], bool)] = &[
    ("length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello", false),
    ("length zero", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
    ("length, bytes beyond", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello", false),
    ("until close", b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nall of this", false),
    ("http/1.0 until close", b"HTTP/1.0 200 OK\r\n\r\nold", false),
    ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", false),
    ("chunked upper hex, leading zeros", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00A\r\n0123456789\r\n000\r\n\r\n", false),
    ("chunked extensions", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;name=value;x\r\nabc\r\n0;last\r\n\r\n", false),
    ("chunked trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n", false),
    ("chunked bare LF", b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n", false),
    ("chunk size, spaces before an extension", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \t;x\r\nhello\r\n0\r\n\r\n", false),
    ("chunk size, bare CR before an extension", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r;x\r\nhello\r\n0\r\n\r\n", false),
    ("chunk size, form feed after it", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\x0c\r\nhello\r\n0\r\n\r\n", false),
    ("chunked, case", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n1\r\nx\r\n0\r\n\r\n", false),
    ("chunked last of a list", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", false),
    ("not chunked last: until close", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n1\r\nx\r\n0\r\n\r\n", false),
    ("gzip only: until close", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw bytes", false),
    ("chunked and length: chunked wins", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false),
    ("chunked cut short", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", false),
    ("chunked without its end", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", false),
    ("chunk size not hex", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false),
    ("chunk size overflow", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nx\r\n0\r\n\r\n", false),
    ("chunk data longer than its size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", false),
    ("length cut short", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", false),
    ("duplicate equal lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", false),
    ("equal lengths in a list", b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", false),
    ("conflicting lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", false),
    ("conflicting lengths in a list", b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd", false),
    ("length not a number", b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nabc", false),
    ("length with a sign", b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc", false),
    ("negative length", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc", false),
    ("empty length", b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nabc", false),
    ("204 with a length", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false),
    ("304 without a body", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n", false),
    ("head with a length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
    ("head chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true),
    ("100 then 200", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
    ("103 then 200", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
    ("two interim answers", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", false),
    ("status 599", b"HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n", false),
    ("status 999", b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n", false),
    ("status 99", b"HTTP/1.1 99 Low\r\nContent-Length: 0\r\n\r\n", false),
    ("status 1000", b"HTTP/1.1 1000 High\r\nContent-Length: 0\r\n\r\n", false),
    ("no reason phrase", b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false),
    ("http/2 status line", b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", false),
    ("garbage", b"this is not http\r\n\r\n", false),
    ("space before colon", b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n", false),
    ("obsolete line folding", b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n", false),
    ("control byte in a value", b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n", false),
    ("obs-text in a value", b"HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", false),
    ("name with a slash", b"HTTP/1.1 200 OK\r\nX/A: 1\r\nContent-Length: 0\r\n\r\n", false),
    ("empty name", b"HTTP/1.1 200 OK\r\n: 1\r\nContent-Length: 0\r\n\r\n", false),
    ("head cut short", b"HTTP/1.1 200 OK\r\nContent-Len", false),
    ("nothing", b"", false),
    ("repeated fields keep their order", b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-B: 2\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n", false),
];

#[tokio::test]
async fn reads_every_answer_of_the_corpus_as_hyper_does() {
    let mut differ = Vec::new();
    for (name, raw, head_request) in CORPUS {
        let theirs = hyper_reads(raw, *head_request).await;
        let mine = ours(raw, *head_request);
        if mine != theirs {
            differ.push(format!("{name}:\n  hyper: {theirs:?}\n  ours:  {mine:?}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[tokio::test]
async fn too_many_header_fields_as_hyper() {
    let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    let at_limit: &'static [u8] = Box::leak([&raw[..], b"\r\n"].concat().into_boxed_slice());
    let over: &'static [u8] =
        Box::leak([&raw[..], b"X-Over: v\r\n\r\n"].concat().into_boxed_slice());
    assert_eq!(ours(at_limit, false), hyper_reads(at_limit, false).await);
    assert!(ours(at_limit, false).is_ok());
    assert_eq!(ours(over, false), hyper_reads(over, false).await);
    assert_eq!(
        read_whole(over, false).err(),
        Some(ReadError::TooManyHeaders)
    );
}

#[test]
fn framing_and_reuse() {
    let head = |raw: &[u8]| {
        parse_head(&mut BytesMut::from(raw), false)
            .unwrap()
            .unwrap()
    };
    let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    assert_eq!((h.framing, h.reusable), (Framing::Length(5), true));
    let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n");
    assert!(!h.reusable, "told to close");
    let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!((h.framing, h.reusable), (Framing::Chunked, true));
    let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(
        (h.framing, h.reusable),
        (Framing::Chunked, false),
        "both framings: read as chunked, never reused"
    );
    let h = head(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!((h.framing, h.reusable), (Framing::UntilClose, false));
    let h = head(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
    assert!(!h.reusable, "HTTP/1.0 without keep-alive");
    assert_eq!(h.version, Version::HTTP_10);
    let h = head(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n");
    assert!(h.reusable);
    let h = head(b"HTTP/1.1 100 Continue\r\n\r\n");
    assert!(h.is_interim() && h.framing == Framing::Empty);
    let h = head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    assert!(!h.is_interim());
    assert!(
        !h.reusable,
        "an upgraded connection never goes back to a pool"
    );
    assert!(matches!(
        parse_head(
            &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nX-A: 1\r\n"[..]),
            false
        ),
        Ok(None)
    ));
    let big = [
        b"HTTP/1.1 200 OK\r\nX-A: ".as_slice(),
        &vec![b'a'; MAX_HEAD_BYTES],
    ]
    .concat();
    assert_eq!(
        parse_head(&mut BytesMut::from(&big[..]), false).err(),
        Some(ReadError::HeadTooLarge)
    );
}

#[test]
fn chunked_bodies_arrive_in_pieces() {
    let wire = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-T: 1\r\n\r\nHTTP/1.1 next";
    // Every split of the wire into two reads gives the same body and
    // leaves the next answer's bytes in the buffer.
    for cut in 0..=wire.len() {
        let mut dec = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut body = Vec::new();
        let mut fed = false;
        loop {
            match dec.decode(&mut buf).unwrap() {
                Decoded::Data(d) => body.extend_from_slice(&d),
                Decoded::NeedMore => {
                    assert!(!fed, "cut {cut}: needs more after everything");
                    buf.extend_from_slice(&wire[cut..]);
                    fed = true;
                }
                Decoded::Done => break,
            }
        }
        if !fed {
            buf.extend_from_slice(&wire[cut..]);
        }
        assert_eq!(body, b"hello!", "cut {cut}");
        assert_eq!(&buf[..], b"HTTP/1.1 next", "cut {cut}");
    }
}

#[test]
fn hostile_chunk_framing_is_refused() {
    let decode_all = |wire: &[u8]| {
        let mut dec = ChunkedDecoder::default();
        let mut buf = BytesMut::from(wire);
        loop {
            match dec.decode(&mut buf) {
                Ok(Decoded::Data(_)) => {}
                other => return other,
            }
        }
    };
    for wire in [
        b"zz\r\n".as_slice(),
        b"\r\n",
        b"-1\r\n",
        b"1 1\r\nx\r\n",
        b"3\r\nabcX\r\n",
        b"11111111111111111\r\n",
    ] {
        assert_eq!(
            decode_all(wire),
            Err(ReadError::Chunk),
            "{}",
            String::from_utf8_lossy(wire)
        );
    }
    let long_line = [b"1;".as_slice(), &vec![b'x'; MAX_CHUNK_LINE]].concat();
    assert_eq!(decode_all(&long_line), Err(ReadError::Chunk));
    let endless_trailers = [
        b"0\r\n".as_slice(),
        &b"X-T: 1\r\n".repeat(MAX_TRAILERS / 8 + 1),
    ]
    .concat();
    assert_eq!(decode_all(&endless_trailers), Err(ReadError::Chunk));
}

/// An answer on the wire, and its status, header fields and body.
type Built = (Vec<u8>, u16, Vec<(String, String)>, Vec<u8>);

/// Valid answers built from parts, with the body framed either way.
fn answer() -> impl Strategy<Value = Built> {
    (
        200u16..600,
        proptest::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,16}"), 0..6),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(1usize..64, 0..8),
        any::<bool>(),
    )
        .prop_filter("a body is allowed", |(s, ..)| *s != 204 && *s != 304)
        .prop_map(|(status, headers, body, cuts, chunked)| {
            let headers: Vec<(String, String)> = headers
                .into_iter()
                .map(|(k, v)| (k, v.trim().to_owned()))
                .collect();
            let mut raw = format!("HTTP/1.1 {status} X\r\n").into_bytes();
            for (k, v) in &headers {
                raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
            if chunked {
                raw.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                for c in cuts.iter().chain(std::iter::repeat(&64)) {
                    if rest.is_empty() {
                        break;
                    }
                    let n = (*c).min(rest.len());
                    raw.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    raw.extend_from_slice(&rest[..n]);
                    raw.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                raw.extend_from_slice(b"0\r\n\r\n");
            } else {
                raw.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
                raw.extend_from_slice(&body);
            }
            (raw, status, headers, body)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_read_or_refused_without_a_panic(raw in proptest::collection::vec(any::<u8>(), 0..512), head in any::<bool>()) {
        let _ = read_whole(&raw, head);
        let _ = parse_head(&mut BytesMut::from(&raw[..]), head);
        let mut dec = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&raw[..]);
        for _ in 0..raw.len() + 1 {
            match dec.decode(&mut buf) {
                Ok(Decoded::Data(_)) => {}
                _ => break,
            }
        }
    }

    #[test]
    fn answers_mostly_valid_with_one_byte_changed_never_panic((raw, ..) in answer(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut raw = raw;
        let i = at.index(raw.len());
        raw[i] = byte;
        let _ = read_whole(&raw, false);
    }

    #[test]
    fn valid_answers_read_back_to_their_parts((raw, status, headers, body) in answer()) {
        let (head, got) = read_whole(&raw, false).unwrap();
        prop_assert_eq!(head.status.as_u16(), status);
        for (k, v) in &headers {
            prop_assert!(head.headers.get_all(k.as_str()).iter().any(|x| x.as_bytes() == v.as_bytes()));
        }
        prop_assert_eq!(&got[..], &body[..]);
        prop_assert!(head.reusable);
    }
}

#[test]
fn known_names_are_the_parsed_names_in_any_case() {
    for (len, names) in KNOWN_NAMES.iter().enumerate() {
        for name in *names {
            assert_eq!(name.as_str().len(), len, "{name} filed under {len}");
            let lower = name.as_str();
            let upper = lower.to_ascii_uppercase();
            let mixed: String = lower
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            for spelling in [lower, &upper, &mixed] {
                let parsed = HeaderName::from_bytes(spelling.as_bytes()).unwrap();
                assert_eq!(known_name(spelling.as_bytes()), Some(&parsed), "{spelling}");
            }
        }
    }
    // Same length, another name; a name one byte off.
    assert_eq!(known_name(b"x-custom"), None);
    assert_eq!(known_name(b"content-lengtx"), None);
    assert_eq!(known_name(b""), None);
    assert_eq!(known_name(&[b'a'; 300]), None);
}
