//! A small PromQL reader for the dashboard checks of `grafana`: which
//! metrics a query selects (every word that is not one of PromQL's
//! functions, aggregations or keywords, outside label matchers, ranges and
//! label lists), the values of a label's matchers, and whether a
//! histogram's buckets reach `histogram_quantile` with their `le` label
//! (every aggregation between the two must keep it). It knows the
//! language's words, not its grammar: enough to tell what a query selects
//! and to fail on a misspelt function or unbalanced brackets.

/// PromQL's aggregation operators: they drop every label their grouping
/// (`by`, `without`) does not keep.
const AGGREGATIONS: &str = "sum min max avg group stddev stdvar count \
     count_values bottomk topk quantile limitk limit_ratio";

/// PromQL's functions (Prometheus 2.55); a name called that is not one of
/// these or an aggregation fails the test.
const FUNCTIONS: &str = "abs absent absent_over_time acos acosh asin asinh atan atanh \
     avg_over_time ceil changes clamp clamp_max clamp_min cos cosh \
     count_over_time day_of_month day_of_week day_of_year days_in_month deg \
     delta deriv exp floor histogram_avg histogram_count histogram_fraction \
     histogram_quantile histogram_stddev histogram_stdvar histogram_sum \
     holt_winters hour idelta increase irate label_join label_replace \
     last_over_time ln log10 log2 mad_over_time max_over_time min_over_time \
     minute month pi predict_linear present_over_time quantile_over_time \
     rad rate resets round scalar sgn sin sinh sort sort_by_label \
     sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time \
     sum_over_time tan tanh time timestamp vector year";

/// Words of PromQL that are neither metrics nor functions. The label lists
/// after `on`, `ignoring`, `group_left` and `group_right` are skipped.
const KEYWORDS: &str = "and or unless bool offset atan2 on ignoring \
     group_left group_right inf nan";

/// One token of a PromQL expression.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A metric, function, keyword or label name.
    Word(String),
    /// A string literal, a number or a duration.
    Literal,
    /// Any other character (brackets, operators, commas).
    Punct(char),
}

/// The tokens of `expr`; an unterminated string fails the test.
fn tokens(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                assert!(i < chars.len(), "unterminated string in {expr:?}");
                out.push(Token::Literal);
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // a number or a duration (1m, 0.99, 1h30m)
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '.')
                {
                    i += 1;
                }
                out.push(Token::Literal);
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || matches!(chars[i + 1], '_' | ':'))
                {
                    i += 1;
                }
                out.push(Token::Word(chars[start..=i].iter().collect()));
            }
            c if c.is_whitespace() => {}
            c => out.push(Token::Punct(c)),
        }
        i += 1;
    }
    out
}

/// Which labels an aggregation keeps.
#[derive(Debug, Clone)]
enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

/// A call of a function or an aggregation, and an aggregation's grouping
/// (`sum by (le) (...)` or `sum(...) by (le)`).
#[derive(Debug)]
struct Call {
    function: String,
    grouping: Option<Grouping>,
}

/// One series selector: the metric name and the calls around it,
/// outermost first (indexes into [`Query::calls`]).
#[derive(Debug)]
pub struct Selector {
    pub name: String,
    calls: Vec<usize>,
}

/// What a PromQL expression selects and the calls around each selector,
/// read by a tokenizer that knows PromQL's functions, aggregations and
/// keywords: every other word outside a label matcher, a range and a
/// grouping or matching label list is a metric name. Brackets must
/// balance, and a called name must be a PromQL function.
#[derive(Debug)]
pub struct Query {
    pub selectors: Vec<Selector>,
    calls: Vec<Call>,
}

/// What a bracket opened.
enum Open {
    /// `(` of a call (its index in the calls) or of a sub-expression.
    Paren(Option<usize>),
    /// `{` of label matchers.
    Brace,
    /// `[` of a range or subquery.
    Bracket,
}

impl Query {
    pub fn parse(expr: &str) -> Query {
        let tokens = tokens(expr);
        let mut query = Query {
            selectors: Vec::new(),
            calls: Vec::new(),
        };
        let mut stack: Vec<Open> = Vec::new();
        // The call whose `(` comes next; the call a `)` closed last.
        let mut pending: Option<usize> = None;
        let mut closed: Option<usize> = None;
        let mut i = 0;
        while i < tokens.len() {
            let next = tokens.get(i + 1);
            match &tokens[i] {
                Token::Word(_) | Token::Literal
                    if matches!(stack.last(), Some(Open::Brace | Open::Bracket)) => {}
                Token::Word(word) if matches!(word.as_str(), "by" | "without") => {
                    let (labels, after) = label_list(expr, &tokens, i + 1);
                    let grouping = if word == "by" {
                        Grouping::By(labels)
                    } else {
                        Grouping::Without(labels)
                    };
                    // `sum by (le) (...)` groups the call to come, `sum(...)
                    // by (le)` the one just closed.
                    let target = pending
                        .or(closed)
                        .unwrap_or_else(|| panic!("{expr:?}: {word} (...) follows no aggregation"));
                    assert!(
                        is_in(AGGREGATIONS, query.calls[target].function.as_str()),
                        "{expr:?}: {word} (...) after {}, which is not an aggregation",
                        query.calls[target].function
                    );
                    query.calls[target].grouping = Some(grouping);
                    i = after;
                    continue;
                }
                Token::Word(word) if is_in(KEYWORDS, word.as_str()) => {
                    if next == Some(&Token::Punct('('))
                        && matches!(
                            word.as_str(),
                            "on" | "ignoring" | "group_left" | "group_right"
                        )
                    {
                        i = label_list(expr, &tokens, i + 1).1;
                        continue;
                    }
                }
                Token::Word(word)
                    if next == Some(&Token::Punct('('))
                        || (is_in(AGGREGATIONS, word.as_str())
                            && matches!(next, Some(Token::Word(w)) if w == "by" || w == "without")) =>
                {
                    assert!(
                        is_in(FUNCTIONS, word.as_str()) || is_in(AGGREGATIONS, word.as_str()),
                        "{expr:?}: {word} is not a PromQL function"
                    );
                    query.calls.push(Call {
                        function: word.clone(),
                        grouping: None,
                    });
                    pending = Some(query.calls.len() - 1);
                }
                Token::Word(word) => query.selectors.push(Selector {
                    name: word.clone(),
                    calls: stack
                        .iter()
                        .filter_map(|open| match open {
                            Open::Paren(call) => *call,
                            _ => None,
                        })
                        .collect(),
                }),
                Token::Literal => {}
                Token::Punct('(') => stack.push(Open::Paren(pending.take())),
                Token::Punct('{') => stack.push(Open::Brace),
                Token::Punct('[') => stack.push(Open::Bracket),
                Token::Punct(c @ (')' | '}' | ']')) => {
                    closed = match (stack.pop(), c) {
                        (Some(Open::Paren(call)), ')') => call,
                        (Some(Open::Brace), '}') | (Some(Open::Bracket), ']') => None,
                        _ => panic!("unbalanced {c:?} in {expr:?}"),
                    };
                }
                Token::Punct(_) => {}
            }
            if !matches!(tokens[i], Token::Punct(')')) {
                closed = None;
            }
            i += 1;
        }
        assert!(stack.is_empty(), "unclosed bracket in {expr:?}");
        assert!(pending.is_none(), "{expr:?}: a call without arguments");
        query
    }

    /// Whether `selector` is inside a `histogram_quantile` and every
    /// aggregation between the two keeps the `le` label, as
    /// `histogram_quantile` needs of a histogram's buckets.
    pub fn quantile_keeps_le(&self, selector: &Selector) -> bool {
        let Some(at) = selector
            .calls
            .iter()
            .rposition(|&call| self.calls[call].function == "histogram_quantile")
        else {
            return false;
        };
        selector.calls[at + 1..].iter().all(|&call| {
            let call = &self.calls[call];
            if !is_in(AGGREGATIONS, call.function.as_str()) {
                return true;
            }
            match &call.grouping {
                Some(Grouping::By(labels)) => labels.iter().any(|l| l == "le"),
                Some(Grouping::Without(labels)) => !labels.iter().any(|l| l == "le"),
                None => false,
            }
        })
    }
}

/// The label names of the `(a, b)` list that starts at `tokens[at]`, and
/// the index after its `)`.
fn label_list(expr: &str, tokens: &[Token], at: usize) -> (Vec<String>, usize) {
    assert_eq!(
        tokens.get(at),
        Some(&Token::Punct('(')),
        "{expr:?}: a label list must follow"
    );
    let mut labels = Vec::new();
    let mut i = at + 1;
    loop {
        match tokens.get(i) {
            Some(Token::Word(label)) => labels.push(label.clone()),
            Some(Token::Punct(',')) => {}
            Some(Token::Punct(')')) => return (labels, i + 1),
            other => panic!("{expr:?}: {other:?} in a label list"),
        }
        i += 1;
    }
}

/// The values of `label="..."` matchers in a PromQL expression.
pub fn label_values(expr: &str, label: &str) -> Vec<String> {
    let needle = format!("{label}=\"");
    expr.match_indices(&needle)
        .filter(|(at, _)| {
            // a whole label name, not the end of a longer one
            !expr[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(at, _)| {
            let rest = &expr[at + needle.len()..];
            rest[..rest.find('"').expect("a closing quote")].to_owned()
        })
        .collect()
}

/// Whether `word` is one of the space-separated `words`.
fn is_in(words: &str, word: &str) -> bool {
    words.split_whitespace().any(|w| w == word)
}

/// The PromQL reader on queries that must read as they do: the checks of
/// the dashboard are only as good as this.
#[test]
fn the_promql_reader_finds_every_metric_and_where_le_is_dropped() {
    let names = |expr: &str| -> Vec<String> {
        Query::parse(expr)
            .selectors
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    assert_eq!(
        names(
            r#"sum by (method, code) (rate(a_total{code!="OK", job="x"}[1m])) / on (method) group_left max(up offset 5m) > bool 0"#
        ),
        ["a_total", "up"]
    );
    assert_eq!(
        names("node_cpu_seconds_total + process_open_fds"),
        ["node_cpu_seconds_total", "process_open_fds"]
    );
    assert_eq!(names("rate(x[5m:1m]) and sum without (le) (y)"), ["x", "y"]);

    let keeps_le = |expr: &str| -> bool {
        let query = Query::parse(expr);
        let bucket = query
            .selectors
            .iter()
            .find(|s| s.name.ends_with("_bucket"))
            .expect("a bucket selector");
        query.quantile_keeps_le(bucket)
    };
    assert!(keeps_le(
        "histogram_quantile(0.5, sum by (method, le) (rate(h_bucket[1m])))"
    ));
    assert!(keeps_le(
        "histogram_quantile(0.5, sum(rate(h_bucket[1m])) by (le))"
    ));
    assert!(keeps_le("histogram_quantile(0.5, rate(h_bucket[1m]))"));
    assert!(keeps_le(
        "histogram_quantile(0.5, sum without (code) (rate(h_bucket[1m])))"
    ));
    assert!(!keeps_le(
        "histogram_quantile(0.5, sum by (method) (rate(h_bucket[1m])))"
    ));
    assert!(!keeps_le(
        "histogram_quantile(0.5, sum(rate(h_bucket[1m])))"
    ));
    assert!(!keeps_le(
        "histogram_quantile(0.5, sum without (le) (rate(h_bucket[1m])))"
    ));
    assert!(!keeps_le("sum by (le) (rate(h_bucket[1m]))"));
    // A `by (le)` elsewhere in the expression does not count.
    assert!(!keeps_le(
        "histogram_quantile(0.5, sum by (method) (rate(h_bucket[1m]))) * on () group_left sum by (le) (z)"
    ));

    for bad in [
        "sum(rate(x[1m])",
        "rate(x[1m]))",
        "histogram_quantlie(0.5, x)",
        "x{a=\"b}",
    ] {
        let parsed = std::panic::catch_unwind(|| Query::parse(bad));
        assert!(parsed.is_err(), "{bad:?} was read as a valid query");
    }
}
