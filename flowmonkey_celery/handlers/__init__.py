"""Built-in step handlers that reach outside the process (HTTP, SMTP, LLM APIs) or need
libraries beyond the domain's (JMESPath). Every `HandlerRegistry` starts with them; a handler
of yours with the same type takes the built-in's place."""
