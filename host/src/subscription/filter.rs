//! Payload filters: a [CEL](https://cel.dev) expression a subscription may hold besides its
//! event-type patterns. An event is routed to the subscription only when the expression is
//! `true` for it.
//!
//! Why CEL: it is a published language with a specification and implementations in Go,
//! Java, C++ and Rust, used for exactly this (Kubernetes admission rules, Envoy and Istio
//! policies, Google Cloud Eventarc and Knative trigger filters). It has no side effects and
//! no loops beyond its list macros, and it reads like the code producers already write
//! (`data.severity == "critical" && data.region.startsWith("eu")`). JSONPath predicates
//! (RFC 9535) select nodes rather than answer yes or no, and Convoy's MongoDB-style
//! operator objects are a dialect of their own.
//!
//! The expression sees two variables:
//! - `data`: the event's payload (a map);
//! - `event`: `{"id", "type", "timestamp", "data"}`.
//!
//! An expression that does not parse, names any other variable, or is too large is refused
//! when the subscription is created. At ingest, one that fails (for example `data.severity`
//! on an event without that field: write `has(data.severity) && …`) or does not yield a
//! boolean counts as not matching.
//!
//! Limits keep a hostile filter from hurting the engine: at most 4 KiB of text, 512
//! expression nodes and 32 levels of nesting, and no list macro (`all`, `exists`, `map`,
//! `filter`, …) inside another one's body, so the cost of a filter stays linear in the
//! payload. The parser recurses deeply, so it runs on a thread with a large stack.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};

use crate::event::Event;

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Most expression nodes in one filter.
const MAX_NODES: usize = 512;
/// Deepest nesting of expressions in one filter.
const MAX_DEPTH: usize = 32;
/// The parser's stack. It is reserved, not committed: only what a parse touches is used.
const PARSE_STACK_BYTES: usize = 256 << 20;
/// Compiled filters kept for reuse when the catalog is rebuilt.
const CACHE_ENTRIES: usize = 20_000;

/// The variables a filter may name.
const VARIABLES: [&str; 2] = ["data", "event"];

/// The standard CEL environment, built once: functions, macros.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Compiled filters by source, so rebuilding the catalog after every change does not parse
/// every filter again.
static CACHE: LazyLock<Mutex<HashMap<String, Arc<Program>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A compiled payload filter.
#[derive(Clone)]
pub struct PayloadFilter {
    source: String,
    program: Arc<Program>,
}

impl std::fmt::Debug for PayloadFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PayloadFilter").field(&self.source).finish()
    }
}

impl PayloadFilter {
    /// Compiles `source`, or says why it cannot be used.
    pub fn parse(source: &str) -> Result<Self, FilterError> {
        if source.trim().is_empty() {
            return Err(FilterError::Empty);
        }
        if source.len() > MAX_FILTER_BYTES {
            return Err(FilterError::TooLong(source.len()));
        }
        let cached = CACHE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(source)
            .cloned();
        let program = match cached {
            Some(program) => program,
            None => {
                let program = Arc::new(compile(source.to_owned())?);
                let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(source.to_owned(), Arc::clone(&program));
                program
            }
        };
        Ok(Self {
            source: source.to_owned(),
            program,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the event passes; an error or a non-boolean result is `false`.
    pub fn matches(&self, input: &FilterInput) -> bool {
        match &input.context {
            Some(context) => matches!(self.program.execute(context), Ok(Value::Bool(true))),
            None => false,
        }
    }
}

/// Parses `source` and checks its variables and shape, on a thread with a stack large
/// enough for the parser's recursion (a rejected deep expression is dropped there too).
fn compile(source: String) -> Result<Program, FilterError> {
    let parse = move || -> Result<Program, FilterError> {
        let program = ENV.compile(&source).map_err(|e| FilterError::Syntax {
            expression: source.clone(),
            error: e.to_string(),
        })?;
        check_shape(program.expression())?;
        Ok(program)
    };
    std::thread::Builder::new()
        .name("filter-parser".into())
        .stack_size(PARSE_STACK_BYTES)
        .spawn(parse)
        .map_err(|e| FilterError::Parser(e.to_string()))?
        .join()
        .map_err(|_| FilterError::Parser("it failed on this expression".into()))?
}

/// Why a filter cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Nothing but space.
    #[error("the filter is empty; leave `filter` out to match every event")]
    Empty,
    /// Over [`MAX_FILTER_BYTES`].
    #[error("the filter is {0} bytes, over the {MAX_FILTER_BYTES}-byte limit")]
    TooLong(usize),
    /// Not CEL.
    #[error("`{expression}` is not a valid CEL expression: {error}")]
    Syntax {
        /// The expression.
        expression: String,
        /// The parser's message.
        error: String,
    },
    /// Over [`MAX_NODES`] nodes.
    #[error(
        "the filter has more than {MAX_NODES} expression nodes; split the condition or simplify it"
    )]
    TooManyNodes,
    /// Over [`MAX_DEPTH`] levels.
    #[error("the filter nests more than {MAX_DEPTH} levels deep; simplify it")]
    TooDeep,
    /// A list macro inside another one's body.
    #[error(
        "the filter nests a list macro (all, exists, exists_one, map, filter) inside another one's body; \
         its cost would grow with the square of the payload"
    )]
    NestedMacro,
    /// Names other than `data`, `event` and macro variables.
    #[error(
        "the filter names `{0}`, which is not defined: a filter sees `data` (the payload) and `event` (id, type, timestamp, data)"
    )]
    UnknownNames(String),
    /// The parser thread could not run.
    #[error("cannot parse the filter: {0}")]
    Parser(String),
}

/// Refuses expressions too large or too deep to evaluate safely, and list macros nested in
/// another macro's body (their cost would grow with the square of the payload). Walks the
/// tree with an explicit stack, so a deep tree cannot overflow this check.
fn check_shape(root: &IdedExpr) -> Result<(), FilterError> {
    // (node, depth, whether it is inside a list macro's body)
    let mut pending: Vec<(&IdedExpr, usize, bool)> = vec![(root, 1, false)];
    let mut nodes = 0;
    let mut names: Vec<&str> = Vec::new();
    let mut bound: Vec<&str> = Vec::new();
    while let Some((node, depth, in_body)) = pending.pop() {
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(FilterError::TooManyNodes);
        }
        if depth > MAX_DEPTH {
            return Err(FilterError::TooDeep);
        }
        let next = depth + 1;
        match &node.expr {
            Expr::Call(call) => {
                pending.extend(call.target.iter().map(|t| (&**t, next, in_body)));
                pending.extend(call.args.iter().map(|a| (a, next, in_body)));
            }
            Expr::Comprehension(c) => {
                if in_body {
                    return Err(FilterError::NestedMacro);
                }
                bound.extend([c.iter_var.as_str(), c.accu_var.as_str()]);
                bound.extend(c.iter_var2.as_deref());
                pending.push((&c.iter_range, next, in_body));
                pending.push((&c.accu_init, next, in_body));
                pending.push((&c.loop_cond, next, true));
                pending.push((&c.loop_step, next, true));
                pending.push((&c.result, next, true));
            }
            Expr::List(list) => pending.extend(list.elements.iter().map(|e| (e, next, in_body))),
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(e) = &entry.expr {
                        pending.push((&e.key, next, in_body));
                        pending.push((&e.value, next, in_body));
                    }
                }
            }
            Expr::Struct(st) => {
                for entry in &st.entries {
                    match &entry.expr {
                        EntryExpr::StructField(f) => pending.push((&f.value, next, in_body)),
                        EntryExpr::MapEntry(e) => {
                            pending.push((&e.key, next, in_body));
                            pending.push((&e.value, next, in_body));
                        }
                    }
                }
            }
            Expr::Select(select) => pending.push((&select.operand, next, in_body)),
            Expr::Ident(name) => names.push(name),
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    // A macro's own variables are allowed anywhere; one used outside its macro fails at
    // evaluation, which counts as not matching.
    let mut unknown: Vec<&str> = names
        .into_iter()
        .filter(|n| !VARIABLES.contains(n) && !bound.contains(n))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        unknown.dedup();
        return Err(FilterError::UnknownNames(unknown.join("`, `")));
    }
    Ok(())
}

/// A JSON value as CEL sees it. Whole numbers become `int` (so `data.count + 1` and
/// `data.count > 2` work as written), larger ones `uint`, others `double`. Recursion
/// follows the payload's nesting, which the JSON parser caps at 128 levels.
fn json_to_cel(value: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Json::Object(fields) => Value::Map(Map {
            map: Arc::new(
                fields
                    .iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

/// One event, converted once for every filter that looks at it.
pub struct FilterInput {
    /// `None` when the payload could not be converted (it was validated at ingest, so
    /// this does not happen in practice); every filter then fails closed.
    context: Option<Context<'static, 'static>>,
}

impl std::fmt::Debug for FilterInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterInput").finish_non_exhaustive()
    }
}

impl FilterInput {
    /// Binds `data` and `event` for `event`.
    pub fn new(event: &Event) -> Self {
        let context = serde_json::from_str::<serde_json::Value>(&event.data)
            .ok()
            .map(|payload| {
                let data = json_to_cel(&payload);
                let mut whole = HashMap::with_capacity(4);
                for (k, v) in [
                    ("id", Value::String(Arc::new(event.id.clone()))),
                    ("type", Value::String(Arc::new(event.kind.clone()))),
                    ("timestamp", Value::String(Arc::new(event.timestamp()))),
                    ("data", data.clone()),
                ] {
                    whole.insert(Key::String(Arc::new(k.to_owned())), v);
                }
                let mut context = Context::with_env(Arc::clone(&ENV));
                context.add_variable_from_value("data", data);
                context.add_variable_from_value(
                    "event",
                    Value::Map(Map {
                        map: Arc::new(whole),
                    }),
                );
                context
            });
        Self { context }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> Event {
        Event {
            id: "evt_1".into(),
            kind: "host.down".into(),
            created_at_ms: 1_781_352_000_000,
            data: data.into(),
            traceparent: None,
        }
    }

    fn passes(filter: &str, data: &str) -> bool {
        PayloadFilter::parse(filter)
            .unwrap()
            .matches(&FilterInput::new(&event(data)))
    }

    #[test]
    fn filters_on_fields_strings_and_lists() {
        let data = r#"{"severity":"critical","region":"eu-west-1","tags":["db","prod"],"cpu":97.5,"count":3}"#;
        assert!(passes(r#"data.severity == "critical""#, data));
        assert!(!passes(r#"data.severity == "warning""#, data));
        assert!(passes(r#"data.region.startsWith("eu-")"#, data));
        assert!(passes(r#""prod" in data.tags"#, data));
        assert!(passes("data.cpu > 90.0 && data.count >= 3", data));
        assert!(passes(r#"data.tags.exists(t, t == "db")"#, data));
        assert!(passes(
            r#"event.type == "host.down" && event.id == "evt_1""#,
            data
        ));
        assert!(passes(r#"event.data.severity == data.severity"#, data));
        assert!(passes(r#"data.region.matches("^eu-")"#, data));
        assert!(passes("data.count + 1 == 4 && data.count > 2", data));
        assert!(passes(r#"data.tags.all(t, t.size() > 1)"#, data));
    }

    #[test]
    fn the_deepest_allowed_filter_evaluates_on_a_small_stack() {
        // 30 levels: within the limit. Evaluation recurses on the caller's stack, a tokio
        // worker's 2 MiB in the engine.
        let filter = format!("{}data.a{} == 30", "(".repeat(28), " + 1)".repeat(28));
        let data = r#"{"a":2}"#;
        let parsed = PayloadFilter::parse(&filter).unwrap();
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || assert!(parsed.matches(&FilterInput::new(&event(data)))))
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn missing_fields_and_non_booleans_do_not_match() {
        assert!(!passes(r#"data.severity == "critical""#, "{}"));
        assert!(passes(
            r#"!has(data.severity) || data.severity == "critical""#,
            "{}"
        ));
        assert!(!passes("data", r#"{"a":1}"#));
        assert!(!passes("1 + 1", "{}"));
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        let err = |f: &str| PayloadFilter::parse(f).unwrap_err().to_string();
        assert!(err("data.severity ==").contains("not a valid CEL expression"));
        assert!(err("(((").contains("not a valid CEL expression"));
        assert!(err("dat.severity == 'x'").contains("`dat`"));
        assert!(err("  ").contains("empty"));
        assert!(err(&format!("data.a == '{}'", "x".repeat(5000))).contains("limit"));
        assert!(err(&format!("1 in [{}1]", "1,".repeat(600))).contains("nodes"));
        assert!(err(&format!("data.x{} > 0", " + 1".repeat(40))).contains("levels"));
        for deep in [
            format!("{}true{}", "(".repeat(1500), ")".repeat(1500)),
            format!("1{} == 1", "+1".repeat(1000)),
            format!("data{} == 1", "[0]".repeat(1000)),
            format!("{}1{} == 1", "-(".repeat(1000), ")".repeat(1000)),
        ] {
            // The parser's recursion must not overflow a stack, and the result is refused.
            assert!(PayloadFilter::parse(&deep).is_err(), "{}", &deep[..20]);
        }
        assert!(
            err("data.a.all(x, data.b.exists(y, x == y))").contains("square"),
            "nested list macros"
        );
        // Macros one after the other are fine.
        assert!(PayloadFilter::parse("data.a.all(x, x > 0) && data.b.exists(y, y == 1)").is_ok());
    }
}
