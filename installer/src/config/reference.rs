//! The answer file's reference, made from the types that read it. `kldload schema` prints their
//! JSON Schema (schemars reads the doc comments and serde attributes of [`super::Config`] and the
//! types under it), and docs/answers.md is rendered here from that schema, each key with its
//! type, default and an example taken from fixtures/answers/. installer/tests/answers_reference.rs
//! holds docs/answers.schema.json and docs/answers.md to what this makes, so neither goes stale.

use serde_json::Value;

/// The schema of a string type, described by its doc comment's lines as `#[doc]` holds them.
pub fn string_schema(doc: &[&str]) -> schemars::Schema {
    let description = doc_text(doc);
    schemars::json_schema!({ "type": "string", "description": description })
}

/// Doc comment lines as one paragraph.
pub fn doc_text(lines: &[&str]) -> String {
    let words: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
    words.join(" ").trim().to_string()
}

/// The JSON Schema of an answer file.
pub fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(super::Config)).expect("a schema is JSON")
}

/// A table of the answer file (the top level is the table with the empty path).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Its dotted path: `pool`, `disks.filter`, `network.static`.
    pub path: String,
    /// An array of tables (`[[datasets]]`).
    pub array: bool,
    pub description: String,
    pub keys: Vec<Key>,
}

/// One key of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub description: String,
    /// Its type in words: `string`, `integer, 9 to 16`, `list of string`, `size`.
    pub kind: String,
    /// The values it takes, when it takes a few words: each with what it means.
    pub values: Vec<(String, String)>,
    /// Its default, as TOML.
    pub default: Option<String>,
    pub required: bool,
}

impl Table {
    /// The table's header in an answer file: `[pool]`, `[[datasets]]`; none for the top level.
    pub fn header(&self) -> Option<String> {
        match (self.path.is_empty(), self.array) {
            (true, _) => None,
            (false, false) => Some(format!("[{}]", self.path)),
            (false, true) => Some(format!("[[{}]]", self.path)),
        }
    }

    /// A key's full name: `hostname`, `pool.name`, `datasets[].mountpoint`.
    pub fn key_path(&self, key: &Key) -> String {
        match (self.path.is_empty(), self.array) {
            (true, _) => key.name.clone(),
            (false, false) => format!("{}.{}", self.path, key.name),
            (false, true) => format!("{}[].{}", self.path, key.name),
        }
    }
}

/// The tables of the schema, the top level first, each followed by the tables inside it.
pub fn tables(schema: &Value) -> Vec<Table> {
    let mut out = Vec::new();
    let description = describe(schema).unwrap_or_default();
    walk(schema, schema, "", false, description, &mut out);
    out
}

fn walk(root: &Value, node: &Value, path: &str, array: bool, about: String, out: &mut Vec<Table>) {
    let index = out.len();
    out.push(Table {
        path: path.to_string(),
        array,
        description: about,
        keys: Vec::new(),
    });
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    let mut inside = Vec::new();
    for (name, property) in properties {
        let ty = resolve(root, property);
        let description = describe(property)
            .or_else(|| describe(ty))
            .unwrap_or_default();
        let child = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        if is_table(ty) {
            inside.push((child, false, description, ty));
            continue;
        }
        if let Some(items) = ty.get("items").map(|i| resolve(root, i))
            && is_table(items)
        {
            inside.push((child, true, description, items));
            continue;
        }
        out[index].keys.push(Key {
            name: name.clone(),
            description,
            kind: kind(root, ty),
            values: values(ty),
            default: property.get("default").and_then(json_as_toml),
            required: required.contains(&name.as_str()),
        });
    }
    for (child, array, description, ty) in inside {
        walk(root, ty, &child, array, description, out);
    }
}

/// A table of named keys (not a map of free names, such as a dataset's `properties`).
fn is_table(ty: &Value) -> bool {
    ty.get("properties").is_some_and(Value::is_object)
}

/// The schema `v` stands for: a `$ref` followed, an option's `null` alternative left out.
fn resolve<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    if let Some(name) = v
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        return resolve(root, &root["$defs"][name]);
    }
    if let Some(alternatives) = v.get("anyOf").and_then(Value::as_array) {
        let not_null: Vec<&Value> = alternatives
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if let [only] = not_null[..] {
            return resolve(root, only);
        }
    }
    v
}

/// A schema's description as one paragraph per paragraph of its doc comment.
fn describe(v: &Value) -> Option<String> {
    let text = v.get("description")?.as_str()?;
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect();
    Some(paragraphs.join("\n\n"))
}

/// The types a schema allows, `null` left out.
fn types(ty: &Value) -> Vec<&str> {
    match ty.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    }
}

/// A key's type in words.
fn kind(root: &Value, ty: &Value) -> String {
    let values = values(ty);
    if !values.is_empty() {
        let words: Vec<&str> = values.iter().map(|(v, _)| v.as_str()).collect();
        return format!("one of {}", words.join(", "));
    }
    match types(ty)[..] {
        ["string", "integer"] | ["integer", "string"] => "size".into(),
        ["array"] => format!("list of {}", kind(root, resolve(root, &ty["items"]))),
        ["object"] => {
            let value = ty.get("additionalProperties").map(|v| resolve(root, v));
            format!(
                "table of {}",
                value.map_or("values".into(), |v| kind(root, v))
            )
        }
        ["integer"] => match (ty.get("minimum"), ty.get("maximum")) {
            (Some(min), Some(max)) => format!("integer, {min} to {max}"),
            _ => "integer".into(),
        },
        ["string"] => match ty.get("format").and_then(Value::as_str) {
            Some("ip") => "IP address".into(),
            _ => "string".into(),
        },
        [one] => one.into(),
        _ => "any".into(),
    }
}

/// The values an enumeration takes, as TOML, each with its description (empty when it has
/// none).
fn values(ty: &Value) -> Vec<(String, String)> {
    if let Some(list) = ty.get("enum").and_then(Value::as_array) {
        return list
            .iter()
            .filter_map(json_as_toml)
            .map(|v| (v, String::new()))
            .collect();
    }
    let Some(alternatives) = ty.get("oneOf").and_then(Value::as_array) else {
        return Vec::new();
    };
    let consts: Option<Vec<(String, String)>> = alternatives
        .iter()
        .map(|a| {
            let value = a.get("const").and_then(json_as_toml)?;
            Some((value, describe(a).unwrap_or_default()))
        })
        .collect();
    consts.unwrap_or_default()
}

/// A JSON value written as TOML writes it; none for null and tables.
fn json_as_toml(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => format!("{s:?}"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let items: Option<Vec<String>> = items.iter().map(json_as_toml).collect();
            format!("[{}]", items?.join(", "))
        }
        Value::Null | Value::Object(_) => return None,
    })
}

/// A TOML value written inline, as an answer file can hold it.
fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_text).collect();
            format!("[{}]", items.join(", "))
        }
        toml::Value::Table(t) => {
            let pairs: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), toml_text(v)))
                .collect();
            format!("{{ {} }}", pairs.join(", "))
        }
    }
}

/// A key as TOML writes it: bare when it can be, else quoted.
fn toml_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// The value `key` of `table` has in the answer file `doc` (in an array of tables, the first
/// entry that has it).
pub fn value_in<'a>(doc: &'a toml::Value, table: &Table, key: &str) -> Option<&'a toml::Value> {
    let mut node = doc;
    for part in table.path.split('.').filter(|p| !p.is_empty()) {
        node = node.get(part)?;
    }
    if table.array {
        node.as_array()?.iter().find_map(|entry| entry.get(key))
    } else {
        node.get(key)
    }
}

/// An example of `key`: the first of `examples` (file name, parsed answer file) that has it.
fn example<'a>(
    examples: &'a [(String, toml::Value)],
    table: &Table,
    key: &str,
) -> Option<(&'a str, &'a toml::Value)> {
    examples
        .iter()
        .find_map(|(file, doc)| value_in(doc, table, key).map(|v| (file.as_str(), v)))
}

/// The keys (by full name) that none of `examples` has.
pub fn keys_without_example(schema: &Value, examples: &[(String, toml::Value)]) -> Vec<String> {
    let mut missing = Vec::new();
    for table in tables(schema) {
        for key in &table.keys {
            if example(examples, &table, &key.name).is_none() {
                missing.push(table.key_path(key));
            }
        }
    }
    missing
}

/// The keys (by full name) the answer file `doc` does not have.
pub fn keys_absent(schema: &Value, doc: &toml::Value) -> Vec<String> {
    let one = [(String::new(), doc.clone())];
    keys_without_example(schema, &one)
}

/// docs/answers.md: every table and key of the schema, with its description, type, default and
/// an example from `examples` (file name, parsed answer file; the first that has the key).
pub fn markdown(schema: &Value, examples: &[(String, toml::Value)]) -> String {
    let mut out = String::new();
    out.push_str(
        "# The answer file\n\n\
         <!-- Made from the doc comments of installer/src/config/ and the files in\n\
         fixtures/answers/ by `KLDLOAD_UPDATE_DOCS=1 cargo test -p kldload --test\n\
         answers_reference`; do not edit: CI fails when this file is not what they make. -->\n\n\
         kldload installs from one TOML file, the answer file: `kldload plan --config FILE` (or\n\
         `kldload validate --offline --config FILE`) checks one anywhere, `kldload validate --config\n\
         FILE` on the machine it installs (its disks too), and `-` reads it from standard input.\n\
         `kldload schema` prints the same reference as a JSON Schema (docs/answers.schema.json),\n\
         for editors that complete and check TOML against one. Every key below has its type, its\n\
         default when it has one, and an example from fixtures/answers/\n\
         (fixtures/answers/everything.toml has nearly all of them in one file).\n",
    );
    for table in tables(schema) {
        if table.keys.is_empty() && table.path.is_empty() {
            continue;
        }
        match table.header() {
            None => out.push_str("\n## The top level\n"),
            Some(header) => out.push_str(&format!("\n## `{header}`\n")),
        }
        if !table.description.is_empty() && !table.path.is_empty() {
            out.push_str(&format!("\n{}\n", table.description));
        }
        for key in &table.keys {
            let required = if key.required { " (required)" } else { "" };
            out.push_str(&format!("\n### `{}`{required}\n\n", table.key_path(key)));
            if !key.description.is_empty() {
                out.push_str(&format!("{}\n\n", key.description));
            }
            out.push_str(&format!("- type: {}\n", key.kind));
            let described: Vec<&(String, String)> =
                key.values.iter().filter(|(_, d)| !d.is_empty()).collect();
            for (value, meaning) in described {
                out.push_str(&format!("  - `{value}`: {meaning}\n"));
            }
            if let Some(default) = &key.default {
                out.push_str(&format!("- default: `{default}`\n"));
            }
            match example(examples, &table, &key.name) {
                Some((file, value)) => out.push_str(&format!(
                    "- example: `{} = {}` ({file})\n",
                    toml_key(&key.name),
                    toml_text(value)
                )),
                None => out.push_str("- example: none in fixtures/answers/\n"),
            }
        }
    }
    out
}
