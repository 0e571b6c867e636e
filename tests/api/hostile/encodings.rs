//! Content encodings: every one but `identity` gets 415 and is never
//! inflated, a gzip bomb included.

use std::io::{Read, Write};
use std::sync::OnceLock;

use beacon_store::testing::TestDatabase;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::case::*;
use crate::on_both_backends;

on_both_backends!(every_content_encoding_but_identity_gets_415);

async fn every_content_encoding_but_identity_gets_415(db: &TestDatabase) {
    super::every_case_is_answered_and_only_the_valid_events_are_stored(db, cases()).await;
}

fn cases() -> Vec<Case> {
    let mut cases = vec![];
    {
        let name = "gzip body";
        cases.push(Case {
            name: name.into(),
            send: Request::Post {
                headers: vec![("Content-Encoding", "gzip")],
                body: gzip(valid(&id(name, "ok")).as_bytes()),
            },
            expect: Expect::Error(415, "unsupported_encoding"),
            stored: vec![],
            refused: vec![id(name, "ok")],
        });
    }
    for (name, encoding) in [
        ("deflate body", "deflate"),
        ("brotli body", "br"),
        ("upper-case GZIP", "GZIP"),
    ] {
        cases.push(Case {
            name: name.into(),
            send: Request::Post {
                headers: vec![("Content-Encoding", encoding)],
                body: valid(&id(name, "ok")).into_bytes(),
            },
            expect: Expect::Error(415, "unsupported_encoding"),
            stored: vec![],
            refused: vec![id(name, "ok")],
        });
    }
    {
        // About 130 KB that inflate to 128 MiB: under the body limit, so only
        // the refusal of the encoding stands between it and an inflater.
        let bomb = gzip_bomb();
        assert!(bomb.len() < 512 * 1024, "the bomb fits the body limit");
        cases.push(Case {
            name: "gzip bomb, sent whole".into(),
            send: whole_then_reused(&[("Content-Encoding", "gzip")], bomb),
            expect: Expect::Error(415, "unsupported_encoding"),
            stored: vec![],
            refused: vec![],
        });
        // Only the first KiB is sent: the 415 comes before the body is read.
        cases.push(Case {
            name: "gzip bomb, partly sent".into(),
            send: Request::Raw {
                bytes: declared_but_partial(
                    &[("Content-Encoding", "gzip")],
                    bomb.len(),
                    &bomb[..1024],
                ),
                then: Then::Closed,
            },
            expect: Expect::Error(415, "unsupported_encoding"),
            stored: vec![],
            refused: vec![],
        });
    }
    {
        let name = "identity encoding";
        cases.push(Case {
            name: name.into(),
            send: Request::Post {
                headers: vec![("Content-Encoding", "identity")],
                body: valid(&id(name, "ok")).into_bytes(),
            },
            expect: Expect::Accepted(vec![]),
            stored: vec![(id(name, "ok"), Box::new(ok))],
            refused: vec![],
        });
    }

    cases
}

/// `data` as one gzip member.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// What the bomb inflates to: [`BOMB_INFLATED`] zero bytes.
const BOMB_INFLATED: usize = 128 * 1024 * 1024;

/// A valid gzip member of zeros that inflates to about 1,000 times its
/// size (the most that deflate allows), made once for every test that
/// sends it.
fn gzip_bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let zeros = vec![0u8; 1024 * 1024];
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        for _ in 0..BOMB_INFLATED / zeros.len() {
            encoder.write_all(&zeros).unwrap();
        }
        encoder.finish().unwrap()
    })
}

#[test]
fn the_gzip_bomb_is_valid_gzip_that_inflates_to_128_mib_of_zeros() {
    let mut inflater = GzDecoder::new(gzip_bomb());
    let mut chunk = vec![0u8; 1024 * 1024];
    let mut inflated = 0;
    loop {
        let n = inflater.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        assert!(chunk[..n].iter().all(|&b| b == 0), "only zeros");
        inflated += n;
    }
    assert_eq!(inflated, BOMB_INFLATED, "inflated size");
}
