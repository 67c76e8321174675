from datasets.selectors import projects_for_user


def projects(request):
    """The project switcher: the user's projects and the one being viewed."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "user_projects": list(projects_for_user(user)),
        "current_project": getattr(request, "project", None),
    }
