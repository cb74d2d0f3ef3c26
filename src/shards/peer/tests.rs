use http::{StatusCode, header};

use super::wire::MAX_LINE;
use super::*;

fn decode_all(framing: Framing, wire: &[u8], split: usize) -> Result<Vec<u8>, PeerError> {
    let mut decoder = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(d) => out.extend_from_slice(&d),
            Decoded::Done => return Ok(out),
            Decoded::NeedMore if fed >= wire.len() => return Err(PeerError::Closed),
            Decoded::NeedMore => {
                let end = (fed + split).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    }
}

#[test]
fn chunked_bodies_decode_however_the_reads_split_them() {
    let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: 1\r\n\r\n";
    for split in 1..wire.len() + 1 {
        assert_eq!(
            decode_all(Framing::Chunked, wire, split).expect("decodes"),
            b"hello 0123456789abcdef",
            "split {split}"
        );
    }
}

#[test]
fn a_length_body_stops_at_its_length() {
    let mut decoder = Decoder::new(Framing::Length(3));
    let mut buf = BytesMut::from(&b"abcdef"[..]);
    assert_eq!(
        decoder.decode(&mut buf).expect("data"),
        Decoded::Data(Bytes::from_static(b"abc"))
    );
    assert_eq!(decoder.decode(&mut buf).expect("done"), Decoded::Done);
    assert_eq!(&buf[..], b"def");
}

#[test]
fn broken_chunk_framing_is_an_error() {
    for wire in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"5\r\nhelloXX0\r\n\r\n",
        b"\r\n",
        b"11111111111111111\r\n",
    ] {
        assert!(
            matches!(
                decode_all(Framing::Chunked, wire, 4),
                Err(PeerError::Malformed(_))
            ),
            "{wire:?}"
        );
    }
    let long = vec![b'1'; MAX_LINE + 10];
    assert!(decode_all(Framing::Chunked, &long, 64).is_err());
}

#[test]
fn heads_parse_with_their_framing() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 1\r\nx-a: 2\r\n\r\nok"[..],
    );
    let first = parse_head(&mut buf).expect("parses").expect("complete");
    assert!(first.status.is_informational());
    let head = parse_head(&mut buf).expect("parses").expect("complete");
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.keep_alive);
    assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
    assert_eq!(head.framing(false).expect("framing"), Framing::Length(2));
    assert_eq!(head.framing(true).expect("framing"), Framing::Empty);
    assert_eq!(&buf[..], b"ok");

    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"[..],
    );
    let head = parse_head(&mut buf).expect("parses").expect("complete");
    assert!(!head.keep_alive);
    assert_eq!(head.framing(false).expect("framing"), Framing::Chunked);

    let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-"[..]);
    assert!(parse_head(&mut partial).expect("partial").is_none());
    let mut bad = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"[..]);
    let head = parse_head(&mut bad).expect("parses").expect("complete");
    assert!(head.framing(false).is_err());
}

#[test]
fn the_head_carries_the_headers_and_the_body_framing() {
    let headers: [(&[u8], &[u8]); 3] = [
        (b"x-onwapp-forwarded-by", b"2"),
        (b"Content-Length", b"99"),
        (b"connection", b"close"),
    ];
    let mut out = BytesMut::new();
    encode_head(
        &mut out,
        &Method::POST,
        "/s/send?x=1",
        "127.0.0.1:9",
        headers,
        &Payload::Bytes(Bytes::from_static(b"{}")),
    );
    assert_eq!(
        &out[..],
        &b"POST /s/send?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nx-onwapp-forwarded-by: 2\r\ncontent-length: 2\r\n\r\n"[..]
    );
}

const NO_HEADERS: [(&[u8], &[u8]); 0] = [];

/// A real server (axum on hyper) that answers in every framing and reports which client
/// connection each request came on.
async fn server() -> String {
    use axum::{
        Router,
        extract::ConnectInfo,
        routing::{get, post},
    };
    use std::net::SocketAddr;
    let app = Router::new()
        .route(
            "/port",
            get(|ConnectInfo(a): ConnectInfo<SocketAddr>| async move { a.port().to_string() }),
        )
        .route(
            "/chunked",
            get(|| async {
                let parts = (0..50).map(|i| Ok::<_, io::Error>(Bytes::from(format!("part{i};"))));
                Body::from_stream(futures_util::stream::iter(parts))
            }),
        )
        .route("/big", get(|| async { vec![7u8; 1 << 20] }))
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        // Answers without reading the body, as a 401 or a 413 does.
        .route("/refuse", post(|| async { StatusCode::UNAUTHORIZED }))
        .route(
            "/echo",
            post(|body: Bytes| async move {
                format!(
                    "{}:{}",
                    body.len(),
                    body.iter().map(|b| *b as u64).sum::<u64>()
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    format!("http://{addr}")
}

async fn text(r: http::Response<Body>) -> String {
    let bytes = r.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

/// `method path` to `base` without headers.
async fn ask(
    peers: &Peers,
    base: &str,
    method: Method,
    path: &str,
    payload: Payload,
) -> Result<http::Response<Body>, PeerError> {
    peers.send(base, &method, path, NO_HEADERS, payload).await
}

async fn get(peers: &Peers, base: &str, path: &str) -> http::Response<Body> {
    ask(peers, base, Method::GET, path, Payload::Bytes(Bytes::new()))
        .await
        .expect("answer")
}

#[tokio::test]
async fn answers_in_every_framing_arrive_whole_on_one_kept_alive_connection() {
    let base = server().await;
    let peers = Peers::default();
    let port = text(get(&peers, &base, "/port").await).await;
    let chunked = get(&peers, &base, "/chunked").await;
    assert!(chunked.headers().contains_key(header::TRANSFER_ENCODING));
    let expected: String = (0..50).map(|i| format!("part{i};")).collect();
    assert_eq!(text(chunked).await, expected);
    let big = get(&peers, &base, "/big").await;
    assert_eq!(
        big.into_body().collect().await.expect("body").to_bytes(),
        vec![7u8; 1 << 20]
    );
    let empty = get(&peers, &base, "/empty").await;
    assert_eq!(empty.status(), StatusCode::NO_CONTENT);
    let head = ask(
        &peers,
        &base,
        Method::HEAD,
        "/big",
        Payload::Bytes(Bytes::new()),
    )
    .await
    .expect("answer");
    assert_eq!(head.headers()[header::CONTENT_LENGTH], "1048576");
    assert_eq!(text(head).await, "");
    // Every answer was read to its end, so the one connection served them all.
    assert_eq!(text(get(&peers, &base, "/port").await).await, port);
}

#[tokio::test]
async fn bodies_go_out_held_or_streamed() {
    let base = server().await;
    let peers = Peers::default();
    let held = vec![3u8; 200_000];
    let answer = ask(
        &peers,
        &base,
        Method::POST,
        "/echo",
        Payload::Bytes(Bytes::from(held)),
    )
    .await
    .expect("answer");
    assert_eq!(text(answer).await, "200000:600000");
    let parts = (0..100).map(|_| Ok::<_, io::Error>(Bytes::from(vec![1u8; 1000])));
    let streamed = Body::from_stream(futures_util::stream::iter(parts));
    let answer = ask(
        &peers,
        &base,
        Method::POST,
        "/echo",
        Payload::Stream(streamed),
    )
    .await
    .expect("answer");
    assert_eq!(text(answer).await, "100000:100000");
}

#[tokio::test]
async fn a_connection_the_member_closed_while_idle_is_not_reused() {
    // A server that answers one request per connection, says keep-alive, then hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut served = 0u32;
        while let Ok((mut s, _)) = listener.accept().await {
            served += 1;
            let mut buf = vec![0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            let body = served.to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
            // Hangs up a moment later: a request sent at once on this connection is never
            // read (the kernel resets the connection under it).
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(s);
        }
    });
    let peers = Peers::default();
    assert_eq!(text(get(&peers, &base, "/").await).await, "1");
    // Seen closed when taken from the pool.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(text(get(&peers, &base, "/").await).await, "2");
    // Taken at once, before its close may have been seen: asked again on a new connection.
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(text(get(&peers, &base, "/").await).await);
    }
    let expected: Vec<String> = (3..23).map(|n: u32| n.to_string()).collect();
    assert_eq!(
        answers, expected,
        "every request answered once, each on its own connection"
    );
}

/// A member that answers its first request on a connection (keep-alive), reads the next one
/// whole, then hangs up without answering: as if it ran the request and died. Counts the
/// requests it read.
async fn dies_after_reading() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let read = Arc::new(AtomicUsize::new(0));
    let seen = read.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                for n in 0.. {
                    match tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    if n > 0 {
                        // Ran it (say), then died before answering.
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    (base, read)
}

#[tokio::test]
async fn a_request_the_member_may_have_run_is_never_sent_twice_unless_it_is_safe() {
    use std::sync::atomic::Ordering;
    let (base, read) = dies_after_reading().await;
    let peers = Peers::default();
    // First request on a connection: answered, and the connection is kept.
    assert_eq!(text(get(&peers, &base, "/").await).await, "ok");
    // A POST on the kept connection: the member read it and hung up. It may have run: an
    // error, never a second copy on a new connection.
    let err = ask(
        &peers,
        &base,
        Method::POST,
        "/send",
        Payload::Bytes(Bytes::from_static(b"{}")),
    )
    .await
    .expect_err("no answer");
    assert!(!err.never_reached(), "{err:?}");
    assert_eq!(read.load(Ordering::SeqCst), 2, "the POST was read once");
    // A GET the same way is safe to repeat: asked again on a new connection, answered.
    assert_eq!(text(get(&peers, &base, "/").await).await, "ok");
    assert_eq!(text(get(&peers, &base, "/").await).await, "ok");
    assert_eq!(read.load(Ordering::SeqCst), 5, "the GET went twice");
    // Nobody listening: provably never reached, so the hop may send it elsewhere.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let err = ask(
        &peers,
        &format!("http://127.0.0.1:{port}"),
        Method::POST,
        "/send",
        Payload::Bytes(Bytes::from_static(b"{}")),
    )
    .await
    .expect_err("nobody listens");
    assert!(err.never_reached(), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_member_is_an_error_that_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let peers = Peers::default();
    let err = ask(
        &peers,
        &format!("http://127.0.0.1:{port}"),
        Method::GET,
        "/",
        Payload::Bytes(Bytes::new()),
    )
    .await
    .expect_err("nobody listens");
    assert!(matches!(err, PeerError::Connect(_)), "{err:?}");
    let err = ask(
        &peers,
        "127.0.0.1:1",
        Method::GET,
        "/",
        Payload::Bytes(Bytes::new()),
    )
    .await
    .expect_err("not a URL");
    assert!(matches!(err, PeerError::Address(_)), "{err:?}");
}

#[tokio::test]
async fn an_answer_before_the_whole_request_is_the_answer() {
    let base = server().await;
    let peers = Peers::default();
    // 32 MiB streamed (more than loopback buffers take) and 1 MiB held.
    let parts = (0..512).map(|_| Ok::<_, io::Error>(Bytes::from(vec![1u8; 64 * 1024])));
    let streamed = Body::from_stream(futures_util::stream::iter(parts));
    let answer = ask(
        &peers,
        &base,
        Method::POST,
        "/refuse",
        Payload::Stream(streamed),
    )
    .await
    .expect("the member's answer");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let held = Payload::Bytes(Bytes::from(vec![2u8; 1 << 20]));
    let answer = ask(&peers, &base, Method::POST, "/refuse", held)
        .await
        .expect("the member's answer");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    // And the pool still works.
    assert_eq!(
        get(&peers, &base, "/empty").await.status(),
        StatusCode::NO_CONTENT
    );
}

/// Whatever a member sends, the head parser and the body decoder answer or refuse; they never
/// panic or loop. Mutations of valid answers (bytes flipped, cut, repeated) and noise.
#[test]
fn mangled_answers_are_refused_or_read_never_a_panic() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let seeds: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nt: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
    ];
    let mut rng = StdRng::seed_from_u64(7);
    let (mut read, mut refused) = (0, 0);
    for round in 0..20_000 {
        let mut wire = seeds[round % seeds.len()].to_vec();
        for _ in 0..rng.random_range(0..6) {
            let at = rng.random_range(0..wire.len().max(1));
            match rng.random_range(0..4) {
                0 if at < wire.len() => wire[at] = rng.random(),
                1 => wire.truncate(at),
                2 => {
                    let piece = wire[at.min(wire.len())..].to_vec();
                    wire.extend_from_slice(&piece);
                }
                _ => wire.insert(at.min(wire.len()), rng.random()),
            }
        }
        let mut buf = BytesMut::from(&wire[..]);
        let Ok(Some(head)) = parse_head(&mut buf) else {
            refused += 1;
            continue;
        };
        let Ok(framing) = head.framing(false) else {
            refused += 1;
            continue;
        };
        read += 1;
        let mut decoder = Decoder::new(framing);
        // Every step takes bytes off the buffer or ends, so this ends.
        for _ in 0..wire.len() + 2 {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(_)) => {}
                Ok(Decoded::NeedMore | Decoded::Done) | Err(_) => break,
            }
        }
    }
    assert!(
        read > 1_000 && refused > 1_000,
        "read {read}, refused {refused}"
    );
}

/// With TLS between nodes nothing goes to a member in the clear, and an `https://` member needs
/// the TLS client.
#[tokio::test]
async fn a_tls_pool_refuses_plain_members_and_a_plain_pool_refuses_https() {
    let ring = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(ring)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let tls = Peers::with_tls(TlsConnector::from(Arc::new(config)));
    let plain_member = server().await;
    for (peers, base) in [
        (&tls, plain_member.as_str()),
        (&Peers::default(), "https://127.0.0.1:1"),
    ] {
        let sent = ask(peers, base, Method::GET, "/x", Payload::Bytes(Bytes::new())).await;
        assert!(
            matches!(sent, Err(PeerError::Address(_))),
            "{base}: {sent:?}"
        );
    }
}
