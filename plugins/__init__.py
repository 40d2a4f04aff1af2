"""Built-in reportgen plugins, declared in the ``reportgen`` entry-point group like any third-party plugin."""
