//! The subset of KumoMTA's injection templating that Ironpost implements:
//! `{{ name }}` and `{{ name.field }}` substitutions only.
//!
//! Anything else that looks like Jinja (`{% ... %}`, `{# ... #}`, filters,
//! expressions) is an error naming the construct, rather than being sent
//! out half-expanded; `template_dialect = "Static"` sends text as is. An
//! undefined variable is an error too (Jinja would silently render it
//! empty, which sends "Dear ," to real people). Values substituted into
//! an HTML body are HTML-escaped, as KumoMTA's auto-escaping does.

use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    None,
    Html,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const STATIC_HINT: &str = "set template_dialect = \"Static\" to send the content as is";

impl Template {
    /// A template that is its text, unexpanded.
    pub fn literal(src: &str) -> Template {
        Template {
            parts: vec![Part::Lit(src.to_string())],
        }
    }

    pub fn compile(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        loop {
            // A lone '{' is literal; scan on past it.
            let Some(pos) = find_open(rest) else {
                if !rest.is_empty() {
                    parts.push(Part::Lit(rest.to_string()));
                }
                break;
            };
            if pos > 0 {
                parts.push(Part::Lit(rest[..pos].to_string()));
            }
            let opener = &rest[pos..pos + 2];
            if opener != "{{" {
                let what = if opener == "{%" {
                    "statement"
                } else {
                    "comment"
                };
                return Err(format!(
                    "template {what} {opener}...: only {{{{ variable }}}} substitutions are supported; {STATIC_HINT}"
                ));
            }
            let after = &rest[pos + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unterminated {{{{ in template; {STATIC_HINT}"))?;
            let expr = after[..end].trim();
            let path: Vec<String> = expr.split('.').map(str::to_string).collect();
            if !path.iter().all(|p| is_ident(p)) {
                let shown: String = expr.chars().take(60).collect();
                return Err(format!(
                    "unsupported template expression {{{{ {shown} }}}}: only {{{{ variable }}}} and {{{{ variable.field }}}} are supported; {STATIC_HINT}"
                ));
            }
            parts.push(Part::Var(path));
            rest = &after[end + 2..];
        }
        Ok(Template { parts })
    }

    /// True when rendering cannot depend on the variables.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    pub fn render(&self, vars: &Map<String, Value>, escape: Escape) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(path) => {
                    let mut v = vars.get(&path[0]);
                    for key in &path[1..] {
                        v = v.and_then(|v| v.get(key));
                    }
                    let name = path.join(".");
                    let text = match v {
                        None => return Err(format!("undefined template variable {name:?}")),
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Number(n)) => n.to_string(),
                        Some(Value::Bool(b)) => b.to_string(),
                        Some(Value::Null) => String::new(),
                        Some(_) => {
                            return Err(format!(
                                "template variable {name:?} is a list or object, not a value"
                            ))
                        }
                    };
                    match escape {
                        Escape::None => out.push_str(&text),
                        Escape::Html => html_escape(&text, &mut out),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The first `{{`, `{%` or `{#`.
fn find_open(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(1)).find(|&i| b[i] == b'{' && matches!(b[i + 1], b'{' | b'%' | b'#'))
}

fn html_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn substitutes() {
        let t = Template::compile("Hi {{ name }}, {{email}} #{{ n }} {{ a.b }} { x } }}").unwrap();
        assert!(!t.is_static());
        let out = t
            .render(
                &vars(json!({"name": "Ann", "email": "a@x", "n": 3, "a": {"b": true}})),
                Escape::None,
            )
            .unwrap();
        assert_eq!(out, "Hi Ann, a@x #3 true { x } }}");
    }

    #[test]
    fn static_text() {
        let t = Template::compile("no templates { here }").unwrap();
        assert!(t.is_static());
        assert_eq!(
            t.render(&Map::new(), Escape::None).unwrap(),
            "no templates { here }"
        );
        let t = Template::compile("").unwrap();
        assert!(t.is_static());
    }

    #[test]
    fn errors() {
        assert!(Template::compile("{% if x %}")
            .unwrap_err()
            .contains("Static"));
        assert!(Template::compile("{# c #}").is_err());
        assert!(Template::compile("{{ name | upper }}").is_err());
        assert!(Template::compile("{{ name").is_err());
        let t = Template::compile("{{ missing }}").unwrap();
        assert!(t
            .render(&Map::new(), Escape::None)
            .unwrap_err()
            .contains("undefined"));
        let t = Template::compile("{{ list }}").unwrap();
        assert!(t.render(&vars(json!({"list": [1]})), Escape::None).is_err());
    }

    #[test]
    fn html_escaping() {
        let t = Template::compile("<p>{{ name }}</p>").unwrap();
        let out = t
            .render(&vars(json!({"name": "<script>&\"'"})), Escape::Html)
            .unwrap();
        assert_eq!(out, "<p>&lt;script&gt;&amp;&quot;&#x27;</p>");
    }

    #[test]
    fn literal() {
        let t = Template::literal("{% raw %}");
        assert!(t.is_static());
        assert_eq!(t.render(&Map::new(), Escape::None).unwrap(), "{% raw %}");
    }
}
