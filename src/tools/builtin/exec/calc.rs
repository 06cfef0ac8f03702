//! `calculator`: evaluates an arithmetic expression with a small recursive-descent parser
//! over `f64` (no `eval`, no program runs). Division by zero, overflow and results that are
//! not a number are precise errors; the input length and nesting depth are capped.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::security::Effect;
use crate::tools::BuiltinError;
use crate::tools::builtin::{Args, Cx, PolicyTool, ok_text};

/// The longest expression taken.
const MAX_LEN: usize = 4096;
/// How deeply parentheses and function calls may nest.
const MAX_DEPTH: usize = 64;
/// Functions, with how many arguments each takes (`None`: one or more).
const FUNCTIONS: [(&str, Option<usize>); 12] = [
    ("sqrt", Some(1)),
    ("sin", Some(1)),
    ("cos", Some(1)),
    ("tan", Some(1)),
    ("ln", Some(1)),
    ("log10", Some(1)),
    ("abs", Some(1)),
    ("floor", Some(1)),
    ("ceil", Some(1)),
    ("round", Some(1)),
    ("min", None),
    ("max", None),
];

/// The `calculator` tool.
pub(super) struct Calculator;

impl PolicyTool for Calculator {
    fn name(&self) -> &'static str {
        "calculator"
    }

    fn description(&self) -> String {
        format!(
            "Evaluates an arithmetic expression (64-bit floating point): + - * / % (remainder), \
             ^ (power, right-associative; -2^2 = -4), parentheses, unary minus, the functions \
             {} (angles in radians), and the constants pi and e. Division by zero, overflow and \
             undefined results (sqrt or ln of a negative number) are errors naming where they \
             happened. At most {MAX_LEN} characters. Result: {{expression, result}}.",
            FUNCTIONS.map(|(n, _)| n).join(", ")
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "expression": { "type": "string", "description": "e.g. `2 * (3 + 4) ^ 2 / sqrt(16)`" }
            },
            "required": ["expression"]
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::Read
    }

    fn run(&self, _cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        Box::pin(async move {
            let a = Args::new(&args)?;
            let expression = a.str("expression")?;
            let result = evaluate(expression).map_err(BuiltinError::Failed)?;
            let shown = format_number(result);
            Ok(ok_text(
                shown.clone(),
                json!({ "expression": expression, "result": result, "text": shown }),
            ))
        })
    }
}

/// A number as a person writes it: integers without `.0`.
fn format_number(x: f64) -> String {
    if x == x.trunc() && x.abs() < 9.007_199_254_740_992e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Evaluates `input`, or says precisely why it cannot.
pub fn evaluate(input: &str) -> Result<f64, String> {
    if input.chars().count() > MAX_LEN {
        return Err(format!(
            "the expression is {} characters; the most is {MAX_LEN}",
            input.chars().count()
        ));
    }
    if input.trim().is_empty() {
        return Err("the expression is empty".to_owned());
    }
    let mut p = Parser {
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
    };
    let value = p.expr()?;
    p.skip_ws();
    if let Some(c) = p.peek() {
        return Err(format!("unexpected `{c}` at position {}", p.pos + 1));
    }
    Ok(value)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Skips whitespace and takes `c` if it is next.
    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "the expression nests deeper than {MAX_DEPTH} levels at position {}",
                self.pos + 1
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<f64, String> {
        self.enter()?;
        let mut value = self.term()?;
        loop {
            let at = self.pos_next();
            if self.eat('+') {
                value = checked(value + self.term()?, "addition", at)?;
            } else if self.eat('-') {
                value = checked(value - self.term()?, "subtraction", at)?;
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(value)
    }

    fn term(&mut self) -> Result<f64, String> {
        let mut value = self.unary()?;
        loop {
            let at = self.pos_next();
            if self.eat('*') {
                value = checked(value * self.unary()?, "multiplication", at)?;
            } else if self.eat('/') {
                let d = self.unary()?;
                if d == 0.0 {
                    return Err(format!("division by zero at position {at}"));
                }
                value = checked(value / d, "division", at)?;
            } else if self.eat('%') {
                let d = self.unary()?;
                if d == 0.0 {
                    return Err(format!("remainder of a division by zero at position {at}"));
                }
                value = checked(value % d, "remainder", at)?;
            } else {
                break;
            }
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<f64, String> {
        if self.eat('-') {
            self.enter()?;
            let v = -self.unary()?;
            self.depth -= 1;
            Ok(v)
        } else if self.eat('+') {
            self.enter()?;
            let v = self.unary()?;
            self.depth -= 1;
            Ok(v)
        } else {
            self.power()
        }
    }

    fn power(&mut self) -> Result<f64, String> {
        let base = self.primary()?;
        let at = self.pos_next();
        if self.eat('^') {
            self.enter()?;
            let exponent = self.unary()?;
            self.depth -= 1;
            return checked(base.powf(exponent), "power", at);
        }
        Ok(base)
    }

    /// The 1-based position of the next non-space character.
    fn pos_next(&mut self) -> usize {
        self.skip_ws();
        self.pos + 1
    }

    fn primary(&mut self) -> Result<f64, String> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => Err("the expression ends where a number was expected".to_owned()),
            Some('(') => {
                self.pos += 1;
                let v = self.expr()?;
                if !self.eat(')') {
                    return Err(format!("`(` at position {} is not closed", start + 1));
                }
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                match name.as_str() {
                    "pi" => return Ok(std::f64::consts::PI),
                    "e" => return Ok(std::f64::consts::E),
                    _ => {}
                }
                let Some(&(_, arity)) = FUNCTIONS.iter().find(|(n, _)| *n == name) else {
                    return Err(format!(
                        "unknown name `{name}` at position {}; functions: {}; constants: pi, e",
                        start + 1,
                        FUNCTIONS.map(|(n, _)| n).join(", ")
                    ));
                };
                if !self.eat('(') {
                    return Err(format!(
                        "`{name}` at position {} must be followed by `(`",
                        start + 1
                    ));
                }
                let mut args = vec![self.expr()?];
                while self.eat(',') {
                    args.push(self.expr()?);
                }
                if !self.eat(')') {
                    return Err(format!(
                        "the call of `{name}` at position {} is not closed with `)`",
                        start + 1
                    ));
                }
                if let Some(n) = arity
                    && args.len() != n
                {
                    return Err(format!(
                        "`{name}` takes {n} argument, not {} (position {})",
                        args.len(),
                        start + 1
                    ));
                }
                apply(&name, &args, start + 1)
            }
            Some(c) => Err(format!("unexpected `{c}` at position {}", start + 1)),
        }
    }

    fn number(&mut self) -> Result<f64, String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
            self.pos += 1;
        }
        // An exponent: `e` followed by digits (with a sign); else `e` is the constant.
        if matches!(self.peek(), Some('e' | 'E')) {
            let mut j = self.pos + 1;
            if matches!(self.chars.get(j), Some('+' | '-')) {
                j += 1;
            }
            if self.chars.get(j).is_some_and(char::is_ascii_digit) {
                self.pos = j;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        let value: f64 = text
            .parse()
            .map_err(|_| format!("`{text}` at position {} is not a number", start + 1))?;
        if !value.is_finite() {
            return Err(format!(
                "`{text}` at position {} is too large for a 64-bit float",
                start + 1
            ));
        }
        Ok(value)
    }
}

/// A function's value, with the domain errors named.
fn apply(name: &str, args: &[f64], at: usize) -> Result<f64, String> {
    let x = args[0];
    let value = match name {
        "sqrt" if x < 0.0 => {
            return Err(format!(
                "sqrt of a negative number ({}) at position {at} is not a real number",
                format_number(x)
            ));
        }
        "ln" | "log10" if x <= 0.0 => {
            return Err(format!(
                "{name} of {} at position {at} is undefined (it needs a positive number)",
                format_number(x)
            ));
        }
        "sqrt" => x.sqrt(),
        "sin" => x.sin(),
        "cos" => x.cos(),
        "tan" => x.tan(),
        "ln" => x.ln(),
        "log10" => x.log10(),
        "abs" => x.abs(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        "round" => x.round(),
        "min" => args.iter().copied().fold(f64::INFINITY, f64::min),
        "max" => args.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        _ => return Err(format!("unknown function `{name}`")),
    };
    checked(value, name, at)
}

/// `value`, or an error when it overflowed or is not a number.
fn checked(value: f64, what: &str, at: usize) -> Result<f64, String> {
    if value.is_nan() {
        Err(format!(
            "the {what} at position {at} has no defined result (not a number)"
        ))
    } else if value.is_infinite() {
        Err(format!(
            "the {what} at position {at} overflows: the result is beyond ±1.8e308"
        ))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_and_precedence() {
        assert_eq!(evaluate("1 + 2 * 3").unwrap(), 7.0);
        assert_eq!(evaluate("(1 + 2) * 3").unwrap(), 9.0);
        assert_eq!(evaluate("2 ^ 3 ^ 2").unwrap(), 512.0);
        assert_eq!(evaluate("-2 ^ 2").unwrap(), -4.0);
        assert_eq!(evaluate("2 ^ -1").unwrap(), 0.5);
        assert_eq!(evaluate("7 % 3").unwrap(), 1.0);
        assert_eq!(evaluate("--3").unwrap(), 3.0);
        assert_eq!(evaluate("1.5e3 + .5").unwrap(), 1500.5);
        assert_eq!(evaluate("max(1, 5, 3) - min(4, 2)").unwrap(), 3.0);
        assert!((evaluate("sin(pi / 2)").unwrap() - 1.0).abs() < 1e-12);
        assert!((evaluate("ln(e)").unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(evaluate("log10(1000)").unwrap(), 3.0);
        assert_eq!(
            evaluate("sqrt(16) + abs(-2) + floor(2.7) + ceil(2.1) + round(2.5)").unwrap(),
            14.0
        );
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(0.5), "0.5");
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(
            evaluate("1 / 0").unwrap_err(),
            "division by zero at position 3"
        );
        assert!(
            evaluate("5 % (2 - 2)")
                .unwrap_err()
                .contains("division by zero")
        );
        assert!(evaluate("10 ^ 400").unwrap_err().contains("overflows"));
        assert!(
            evaluate("sqrt(-4)")
                .unwrap_err()
                .contains("sqrt of a negative number (-4)")
        );
        assert!(evaluate("ln(0)").unwrap_err().contains("undefined"));
        assert!(evaluate("(1 + 2").unwrap_err().contains("not closed"));
        assert!(evaluate("1 +").unwrap_err().contains("ends"));
        assert!(
            evaluate("foo(1)")
                .unwrap_err()
                .contains("unknown name `foo`")
        );
        assert!(
            evaluate("sqrt(1, 2)")
                .unwrap_err()
                .contains("takes 1 argument")
        );
        assert!(evaluate("2 3").unwrap_err().contains("unexpected `3`"));
        assert!(evaluate("1e999").unwrap_err().contains("too large"));
        assert!(
            evaluate(&"(".repeat(200))
                .unwrap_err()
                .contains("nests deeper")
        );
        assert!(
            evaluate(&"1+".repeat(5000))
                .unwrap_err()
                .contains("the most is")
        );
        assert!(evaluate("").unwrap_err().contains("empty"));
        assert!(evaluate("__import__('os')").is_err());
    }
}
