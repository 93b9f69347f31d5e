with connect() as codex:
    models = codex.models()
    check(isinstance(models.data, list), "model/list gives a list")
    check(all(model.id for model in models.data), "every model has an id")
    hidden = codex.models(include_hidden=True)
    check(len(hidden.data) >= len(models.data), "includeHidden lists at least as many")
    account = codex.account()
    check(isinstance(account.requires_openai_auth, bool), "account/read answers requiresOpenaiAuth")
print("ok")
