//! A strict parser of the Prometheus text exposition format 0.0.4 for `/metrics`: only HELP,
//! TYPE and sample lines; every family's HELP and TYPE once, before its samples; a family's
//! samples together; pure, no I/O.

#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug)]
pub struct Family {
    pub name: String,
    pub help: Option<String>,
    pub kind: Option<String>,
    pub samples: usize,
}

#[derive(Debug)]
pub struct Exposition {
    pub families: Vec<Family>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the sample `name` with exactly `labels` (in any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A sample value: a Go-style float, `+Inf`, `-Inf` or `NaN`.
fn parse_metric_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// `name{label="value",…} value [timestamp]`.
pub fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
            if !is_label_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            if labels.iter().any(|(k, _)| k == key) {
                return Err(format!("label {key:?} given twice"));
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape in a label value: {other:?}")),
                    },
                    Some((_, '\n')) => return Err("raw newline in a label value".into()),
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            rest = &after[end + 1..];
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}' after a label".into());
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected one space before the value")?;
    let mut fields = rest.split(' ');
    let value = fields.next().unwrap_or("");
    let value = parse_metric_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("extra fields after the value".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

pub fn parse_exposition(text: &str) -> Result<Exposition, String> {
    if !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    let mut families: Vec<Family> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    // The family the last HELP or TYPE line named: samples must belong to it.
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        if let Some((what, rest)) = meta {
            let (name, value) = rest
                .split_once(' ')
                .ok_or_else(|| at(&format!("{what} without text")))?;
            if !is_metric_name(name) {
                return Err(at("bad metric name"));
            }
            if current.as_deref() != Some(name) && families.iter().any(|f| f.name == name) {
                return Err(at("family split in two"));
            }
            if current.as_deref() != Some(name) {
                families.push(Family {
                    name: name.to_string(),
                    help: None,
                    kind: None,
                    samples: 0,
                });
                current = Some(name.to_string());
            }
            let f = families.last_mut().expect("just pushed or current");
            if f.samples > 0 {
                return Err(at(&format!("{what} after the family's samples")));
            }
            let slot = if what == "HELP" {
                &mut f.help
            } else {
                if !matches!(
                    value,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(at("unknown TYPE"));
                }
                &mut f.kind
            };
            if slot.is_some() {
                return Err(at(&format!("second {what}")));
            }
            *slot = Some(value.to_string());
        } else if line.starts_with('#') {
            return Err(at("a comment that is neither HELP nor TYPE"));
        } else {
            let s = parse_sample(line).map_err(|e| at(&e))?;
            let f = families
                .last_mut()
                .filter(|f| f.name == s.name)
                .ok_or_else(|| at("sample outside its family's HELP and TYPE"))?;
            if f.help.is_none() || f.kind.is_none() {
                return Err(at("sample before its family's HELP and TYPE"));
            }
            let dup = samples.iter().any(|o| {
                o.name == s.name
                    && o.labels.len() == s.labels.len()
                    && o.labels.iter().all(|l| s.labels.contains(l))
            });
            if dup {
                return Err(at("the same series twice"));
            }
            f.samples += 1;
            samples.push(s);
        }
    }
    if let Some(f) = families
        .iter()
        .find(|f| f.help.is_none() || f.kind.is_none())
    {
        return Err(format!("family {} lacks HELP or TYPE", f.name));
    }
    Ok(Exposition { families, samples })
}
