"""The Jira Cloud platform REST API operations runwatch uses, as Atlassian's OpenAPI document says.

Recorded by hand from `swagger-v3.v3.json` (https://dac-static.atlassian.com/cloud/jira/platform/
swagger-v3.v3.json): for each operation the Jira sink and its self-check call, the method,
path, query parameters with their types, whether a body is required and its schema, and the
documented answers with their schemas. Only the properties of each schema (name and type),
its `required` list and whether it allows other properties are kept: enough to validate the
adapter's requests and the fake's answers, and no copy of the document.

The service desk API (/rest/servicedeskapi/...) is not part of this document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DOCUMENT = {
    "title": "The Jira Cloud platform REST API",
    "openapi": "3.0.1",
    "version": "1001.0.0-SNAPSHOT-57a0ca5b4a0bb0ac5f3fee4764acb1c14e4d7e71",
    # The document carries no date; this is the date of the published copy that was read.
    "date": "2025-12-25",
    "sha256_prefix": "1f0911c58a45c712",
}

# A type is "string", "integer", "boolean", "any", "object" (any JSON object), ("array", T),
# ("map", T) (an object whose values are T), or a Schema.
Type = Any


@dataclass(frozen=True)
class Schema:
    name: str
    properties: dict[str, Type]
    required: tuple[str, ...] = ()
    closed: bool = False  # additionalProperties: false


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str  # with {parameters}
    query: dict[str, Type] = field(default_factory=dict)
    body: Schema | None = None  # requestBody, required when given
    responses: dict[int, Schema | Type | None] = field(default_factory=dict)  # None: no body
    deprecated: bool = False


STATUS_CATEGORY = Schema(
    "StatusCategory",
    {"colorName": "string", "id": "integer", "key": "string", "name": "string", "self": "string"},
)
STATUS_DETAILS = Schema(
    "StatusDetails",
    {
        "description": "string",
        "iconUrl": "string",
        "id": "string",
        "name": "string",
        "scope": "object",
        "self": "string",
        "statusCategory": STATUS_CATEGORY,
    },
)
FIELD_METADATA = Schema(
    "FieldMetadata",
    {
        "allowedValues": ("array", "any"),
        "autoCompleteUrl": "string",
        "configuration": ("map", "any"),
        "defaultValue": "any",
        "hasDefaultValue": "boolean",
        "key": "string",
        "name": "string",
        "operations": ("array", "string"),
        "required": "boolean",
        "schema": "object",
    },
    required=("key", "name", "operations", "required", "schema"),
    closed=True,
)
ISSUE_TRANSITION = Schema(
    "IssueTransition",
    {
        "expand": "string",
        "fields": ("map", FIELD_METADATA),
        "hasScreen": "boolean",
        "id": "string",
        "isAvailable": "boolean",
        "isConditional": "boolean",
        "isGlobal": "boolean",
        "isInitial": "boolean",
        "looped": "boolean",
        "name": "string",
        "to": STATUS_DETAILS,
    },
)
ENTITY_PROPERTY = Schema("EntityProperty", {"key": "string", "value": "any"}, closed=True)
ISSUE_UPDATE_DETAILS = Schema(
    "IssueUpdateDetails",
    {
        "fields": ("map", "any"),
        "historyMetadata": "object",
        "properties": ("array", ENTITY_PROPERTY),
        "transition": ISSUE_TRANSITION,
        "update": ("map", ("array", "object")),
    },
)
CREATED_ISSUE = Schema(
    "CreatedIssue",
    {
        "id": "string",
        "key": "string",
        "self": "string",
        "transition": "object",
        "watchers": "object",
    },
    closed=True,
)
ISSUE_BEAN = Schema(
    "IssueBean",
    {
        "changelog": "object",
        "editmeta": "object",
        "expand": "string",
        "fields": ("map", "any"),
        "fieldsToInclude": "object",
        "id": "string",
        "key": "string",
        "names": ("map", "string"),
        "operations": "object",
        "properties": ("map", "any"),
        "renderedFields": ("map", "any"),
        "schema": ("map", "object"),
        "self": "string",
        "transitions": ("array", ISSUE_TRANSITION),
        "versionedRepresentations": ("map", "object"),
    },
    closed=True,
)
SEARCH_RESULTS = Schema(
    "SearchAndReconcileResults",
    {
        "isLast": "boolean",
        "issues": ("array", ISSUE_BEAN),
        "names": ("map", "string"),
        "nextPageToken": "string",
        "schema": ("map", "object"),
    },
    closed=True,
)
TRANSITIONS = Schema(
    "Transitions",
    {"expand": "string", "transitions": ("array", ISSUE_TRANSITION)},
    closed=True,
)
VISIBILITY = Schema("Visibility", {"identifier": "string", "type": "string", "value": "string"})
COMMENT = Schema(
    "Comment",
    {
        "author": "object",
        "body": "any",
        "created": "string",
        "id": "string",
        "jsdAuthorCanSeeRequest": "boolean",
        "jsdPublic": "boolean",
        "properties": ("array", ENTITY_PROPERTY),
        "renderedBody": "string",
        "self": "string",
        "updateAuthor": "object",
        "updated": "string",
        "visibility": VISIBILITY,
    },
)
USER = Schema(
    "User",
    {
        "accountId": "string",
        "accountType": "string",
        "active": "boolean",
        "appType": "string",
        "applicationRoles": "object",
        "avatarUrls": "object",
        "displayName": "string",
        "emailAddress": "string",
        "expand": "string",
        "groups": "object",
        "key": "string",
        "locale": "string",
        "name": "string",
        "self": "string",
        "timeZone": "string",
    },
    closed=True,
)
PROJECT = Schema(
    "Project",
    {
        **dict.fromkeys(
            (
                "archivedBy",
                "avatarUrls",
                "deletedBy",
                "insight",
                "issueTypeHierarchy",
                "landingPageInfo",
                "lead",
                "permissions",
                "projectCategory",
            ),
            "object",
        ),
        **dict.fromkeys(
            (
                "archivedDate",
                "assigneeType",
                "deletedDate",
                "description",
                "email",
                "expand",
                "id",
                "key",
                "name",
                "projectTypeKey",
                "retentionTillDate",
                "self",
                "style",
                "url",
                "uuid",
            ),
            "string",
        ),
        **dict.fromkeys(("archived", "deleted", "favourite", "isPrivate", "simplified"), "boolean"),
        "components": ("array", "object"),
        "issueTypes": ("array", "object"),
        "properties": ("map", "any"),
        "roles": ("map", "string"),
        "versions": ("array", "object"),
    },
    closed=True,
)
ISSUE_TYPE_WITH_STATUS = Schema(
    "IssueTypeWithStatus",
    {
        "id": "string",
        "name": "string",
        "self": "string",
        "statuses": ("array", STATUS_DETAILS),
        "subtask": "boolean",
    },
    required=("id", "name", "self", "statuses", "subtask"),
    closed=True,
)
PRIORITY = Schema(
    "Priority",
    {
        "avatarId": "integer",
        "description": "string",
        "iconUrl": "string",
        "id": "string",
        "isDefault": "boolean",
        "name": "string",
        "schemes": "object",
        "self": "string",
        "statusColor": "string",
    },
)
USER_PERMISSION = Schema(
    "UserPermission",
    {
        "deprecatedKey": "boolean",
        "description": "string",
        "havePermission": "boolean",
        "id": "string",
        "key": "string",
        "name": "string",
        "type": "string",
    },
)
PERMISSIONS = Schema("Permissions", {"permissions": ("map", USER_PERMISSION)}, closed=True)
ERROR_COLLECTION = Schema(
    "ErrorCollection",
    {"errorMessages": ("array", "string"), "errors": ("map", "string"), "status": "integer"},
    closed=True,
)

ISSUE = "/rest/api/3/issue/{issueIdOrKey}"
OPERATIONS = (
    Operation(
        "createIssue",
        "POST",
        "/rest/api/3/issue",
        query={"updateHistory": "boolean"},
        body=ISSUE_UPDATE_DETAILS,
        responses={201: CREATED_ISSUE, **dict.fromkeys((400, 401, 403, 422), ERROR_COLLECTION)},
    ),
    Operation(
        "searchAndReconsileIssuesUsingJql",
        "GET",
        "/rest/api/3/search/jql",
        query={
            "jql": "string",
            "nextPageToken": "string",
            "maxResults": "integer",
            "fields": ("array", "string"),
            "expand": "string",
            "properties": ("array", "string"),
            "fieldsByKeys": "boolean",
            "failFast": "boolean",
            "reconcileIssues": ("array", "integer"),
        },
        responses={200: SEARCH_RESULTS, 400: "any", 401: "any"},
    ),
    Operation(
        "getIssue",
        "GET",
        ISSUE,
        query={
            "fields": ("array", "string"),
            "fieldsByKeys": "boolean",
            "expand": "string",
            "properties": ("array", "string"),
            "updateHistory": "boolean",
            "failFast": "boolean",
        },
        responses={200: ISSUE_BEAN, 401: "any", 404: "any"},
    ),
    Operation(
        "editIssue",
        "PUT",
        ISSUE,
        query={
            "notifyUsers": "boolean",
            "overrideScreenSecurity": "boolean",
            "overrideEditableFlag": "boolean",
            "returnIssue": "boolean",
            "expand": "string",
        },
        body=ISSUE_UPDATE_DETAILS,
        responses={200: "any", 204: None, **dict.fromkeys((400, 401, 403, 404, 409, 422), "any")},
    ),
    Operation(
        "getTransitions",
        "GET",
        ISSUE + "/transitions",
        query={
            "expand": "string",
            "transitionId": "string",
            "skipRemoteOnlyCondition": "boolean",
            "includeUnavailableTransitions": "boolean",
            "sortByOpsBarAndStatus": "boolean",
        },
        responses={200: TRANSITIONS, 401: "any", 404: "any"},
    ),
    Operation(
        "doTransition",
        "POST",
        ISSUE + "/transitions",
        body=ISSUE_UPDATE_DETAILS,
        responses={204: None, **dict.fromkeys((400, 401, 404, 409, 413, 422), "any")},
    ),
    Operation(
        "addComment",
        "POST",
        ISSUE + "/comment",
        query={"expand": "string"},
        body=COMMENT,
        responses={201: COMMENT, **dict.fromkeys((400, 401, 404, 413), "any")},
    ),
    Operation(
        "getCurrentUser",
        "GET",
        "/rest/api/3/myself",
        query={"expand": "string"},
        responses={200: USER, 401: "any"},
    ),
    Operation(
        "getProject",
        "GET",
        "/rest/api/3/project/{projectIdOrKey}",
        query={"expand": "string", "properties": ("array", "string")},
        responses={200: PROJECT, 401: "any", 404: "any"},
    ),
    Operation(
        "getAllStatuses",
        "GET",
        "/rest/api/3/project/{projectIdOrKey}/statuses",
        responses={200: ("array", ISSUE_TYPE_WITH_STATUS), 401: "any", 404: "any"},
    ),
    Operation(
        "getPriorities",
        "GET",
        "/rest/api/3/priority",
        responses={200: ("array", PRIORITY), 401: "any"},
        deprecated=True,  # still served; its successor priority/search is deprecated too
    ),
    Operation(
        "getMyPermissions",
        "GET",
        "/rest/api/3/mypermissions",
        query=dict.fromkeys(
            (
                "projectKey",
                "projectId",
                "issueKey",
                "issueId",
                "permissions",
                "projectUuid",
                "projectConfigurationUuid",
                "commentId",
            ),
            "string",
        ),
        responses={200: PERMISSIONS, **dict.fromkeys((400, 401, 404), ERROR_COLLECTION)},
    ),
)
