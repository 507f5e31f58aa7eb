//! Chat templates: a policy that asks for it has its prompt rendered through the model
//! folder's `chat_template` (Jinja, as in `tokenizer_config.json`) with minijinja, with
//! Python string methods (`.strip()`, `.startswith()`, …) that templates commonly use.
//! `strftime_now` formats a given day, not the clock: a study's samples must not depend
//! on the day they were generated (see [`crate::Generator::set_template_day`]).

use minijinja::{Environment, ErrorKind, Value, context};

use crate::error::EngineError;

/// Renders one user message with the generation prompt appended, as transformers'
/// `apply_chat_template(..., add_generation_prompt=True, tokenize=False)` does.
pub(crate) fn render(
    template: &str,
    user: &str,
    bos: Option<&str>,
    eos: Option<&str>,
    day: chrono::NaiveDate,
) -> Result<String, EngineError> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<Value, minijinja::Error> {
        Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
    });
    let midnight = day.and_time(chrono::NaiveTime::MIN);
    env.add_function("strftime_now", move |fmt: String| midnight.format(&fmt).to_string());
    env.add_template("chat", template)
        .map_err(|e| EngineError::Template(format!("the chat template does not parse: {e}")))?;
    let t = env.get_template("chat").map_err(|e| EngineError::Template(e.to_string()))?;
    t.render(context! {
        messages => vec![context! { role => "user", content => user }],
        add_generation_prompt => true,
        bos_token => bos.unwrap_or(""),
        eos_token => eos.unwrap_or(""),
    })
    .map_err(|e| EngineError::Template(format!("rendering the chat template failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 3, 7).unwrap()
    }

    #[test]
    fn a_template_that_prints_the_date_sees_the_given_day() {
        let t = "Today Date: {{ strftime_now('%d %b %Y') }}\n{{ messages[0]['content'] }}";
        assert_eq!(render(t, "hi", None, None, day()).unwrap(), "Today Date: 07 Mar 2026\nhi");
    }

    #[test]
    fn renders_a_chatml_style_template_with_python_methods() {
        let t = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'].strip() }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let out = render(t, "  hi  ", None, None, day()).unwrap();
        assert_eq!(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn bos_token_and_filters() {
        let t = "{{ bos_token }}{% for m in messages %}<t>{{ m['content'] | trim | lower }}<f>{% endfor %}";
        assert_eq!(render(t, " Love ", Some("<s>"), None, day()).unwrap(), "<s><t>love<f>");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = "{{ raise_exception('only user and assistant roles') }}";
        let e = render(t, "x", None, None, day()).unwrap_err().to_string();
        assert!(e.contains("only user and assistant roles"), "{e}");
    }
}
