#!/usr/bin/env python3
"""Reference chat-template renderings for vzquant's ChatTemplate tests.

The real chat templates of five models (public data, copied here verbatim) are rendered with transformers' own
helper (transformers.utils.chat_template_utils.render_jinja_template: jinja2 with trim_blocks, lstrip_blocks,
raise_exception, tojson and the {% generation %} extension, exactly what apply_chat_template runs) for a few
conversations, every prefix of each conversation, with and without add_generation_prompt:

  llava-1.5      llava-hf/llava-1.5-7b-hf chat_template.json (the processor's template: content is a list of
                 {"type": "image"} / {"type": "text"} parts; a message "<image>\\nText" becomes [image, text] here)
  qwen2          Qwen/Qwen2-0.5B-Instruct tokenizer_config.json
  smollm2        HuggingFaceTB/SmolLM2-135M-Instruct, read from the GGUF's tokenizer.chat_template with gguf-py
                 (~/.cache/vzquant/models/SmolLM2-135M-Instruct.Q4_1.gguf, or --smollm PATH)
  llama3         meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json
  llama2         meta-llama/Llama-2-7b-chat-hf tokenizer_config.json

Output: Tests/VZQuantTests/Fixtures/chat_templates/renders.json
  {"templates": [{"name", "family", "architecture", "bos_token", "eos_token", "template",
                  "cases": [{"conversation", "messages": [{"role", "content"}], "add_generation_prompt", "text"}]}]}
"messages" are the plain-string messages the Swift side renders; "text" is transformers' rendering.

Needs: pip install transformers jinja2 gguf   (the Swift tests only read the committed file)
"""
import argparse
import json
import os

from transformers.utils.chat_template_utils import render_jinja_template

LLAVA_15 = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

CONVERSATIONS = {
    "one_turn": [("user", "What is the capital of France?")],
    "with_system": [("system", "You are a terse assistant."), ("user", "Name three primes.")],
    "multi_turn": [
        ("user", "Hi!"),
        ("assistant", "Hello! How can I help?"),
        ("user", "Tell me a joke."),
        ("assistant", "Why did the chicken cross the road?"),
        ("user", "Why?"),
    ],
    "image": [("user", "<image>\nWhat is shown in this picture?")],
    "image_system_multi": [
        ("system", "Describe images carefully."),
        ("user", "<image>\nDescribe the image."),
        ("assistant", "A cat sleeps on a red sofa."),
        ("user", "What colour is the cat?"),
    ],
    "unicode": [("user", "Привет, 世界! 🎉 Grüße — ¿qué tal?\nSecond line.")],
    # llama3 trims, llama2 strips: leading/trailing whitespace in the content
    "whitespace": [("user", "  padded question \n"), ("assistant", " padded answer  "), ("user", "\tnext\t")],
}


def llava_content(role, text):
    """The processor template wants content parts; "<image>\\n" at the start becomes an image part."""
    parts = []
    while text.startswith("<image>\n"):
        parts.append({"type": "image"})
        text = text[len("<image>\n"):]
    parts.append({"type": "text", "text": text})
    return parts


def render(template, messages, add_generation_prompt, bos, eos, structured):
    chat = [{"role": r, "content": llava_content(r, c) if structured else c} for r, c in messages]
    out = render_jinja_template(conversations=[chat], chat_template=template,
                                add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
    rendered = out[0] if isinstance(out, tuple) else out
    return rendered[0] if isinstance(rendered, list) else rendered


def smollm_template(path):
    from gguf import GGUFReader
    reader = GGUFReader(path)
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm", default=os.path.expanduser("~/.cache/vzquant/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(here, "..", "Tests", "VZQuantTests", "Fixtures", "chat_templates",
                                                  "renders.json"))
    args = ap.parse_args()

    templates = [
        ("llava-1.5", "vicuna", "llama", LLAVA_15, "<s>", "</s>", True),
        ("qwen2", "chatml", "qwen2", QWEN2, None, "<|im_end|>", False),
        ("smollm2", "smollm", "llama", smollm_template(args.smollm), "<|im_start|>", "<|im_end|>", False),
        ("llama3", "llama3", "llama", LLAMA3, "<|begin_of_text|>", "<|eot_id|>", False),
        ("llama2", "llama2", "llama", LLAMA2, "<s>", "</s>", False),
    ]
    out = {"templates": []}
    for name, family, arch, template, bos, eos, structured in templates:
        cases = []
        for conv_name, conv in CONVERSATIONS.items():
            for n in range(1, len(conv) + 1):
                messages = conv[:n]
                for gen in (False, True):
                    try:
                        text = render(template, messages, gen, bos, eos, structured)
                    except Exception as e:  # llama2 refuses non-alternating roles: the Swift side must throw too
                        text = None
                        print(f"{name} {conv_name}[:{n}]: {type(e).__name__}: {e}")
                    cases.append({"conversation": conv_name,
                                  "messages": [{"role": r, "content": c} for r, c in messages],
                                  "add_generation_prompt": gen, "text": text})
        out["templates"].append({"name": name, "family": family, "architecture": arch, "bos_token": bos,
                                 "eos_token": eos, "template": template, "cases": cases})
        print(f"{name}: {len(cases)} renderings")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(args.out))


if __name__ == "__main__":
    main()
