//! A hostile adapter. Its `mode` setting picks the attack:
//! - `spin`: loops forever (the CPU budget must stop it);
//! - `membomb`: allocates until memory runs out (the memory cap must stop it);
//! - `panic`: panics, which traps (the message goes to stderr);
//! - `bigout`: returns an 8 MiB body (the output cap must refuse it);
//! - `escape`: tries to read a file, the environment and the network, and reports what it
//!   got as the body (all of it must fail or be empty);
//! - anything else: delivers `{"ok": true}`.

/// The generated bindings; lints are silenced here only, for code we do not write.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/v0.1.0",
        world: "adapter",
    });
}

use bindings::{Action, AdapterError, Context, Event, Guest, Request};

struct Hostile;

fn deliver(body: Vec<u8>) -> Result<Action, AdapterError> {
    Ok(Action::Deliver(Request {
        method: "POST".into(),
        url: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    }))
}

impl Guest for Hostile {
    fn transform(_event: Event, context: Context) -> Result<Action, AdapterError> {
        let mode = context
            .settings
            .iter()
            .find(|(k, _)| k == "mode")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        match mode {
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "membomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile guest panicked on purpose"),
            "bigout" => deliver(vec![b'x'; 8 << 20]),
            "escape" => {
                let file = std::fs::read_to_string("/etc/passwd").map(|s| s.len());
                let cwd = std::fs::read_dir(".").map(|d| d.count());
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let net = std::net::TcpStream::connect("127.0.0.1:1");
                let body = format!(
                    "{{\"file\":{:?},\"dir\":{:?},\"env\":{},\"net\":{:?}}}",
                    format!("{file:?}"),
                    format!("{cwd:?}"),
                    env.len(),
                    format!("{:?}", net.map(|_| "connected")),
                );
                deliver(body.into_bytes())
            }
            _ => deliver(b"{\"ok\":true}".to_vec()),
        }
    }
}

bindings::export!(Hostile with_types_in bindings);
