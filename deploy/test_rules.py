#!/usr/bin/env python3
"""Checks what template.yaml lets through before CloudFormation creates or changes anything.

For sets of parameter values it does what CloudFormation does first: checks each value against its parameter's
constraints (AllowedValues, AllowedPattern, MinValue/MaxValue), then evaluates the Rules section, and reports
which rules refuse the set. It also checks what the functions are given (environment, time limits, S3 grants)
for those values. Only the intrinsic functions the template uses are implemented; any other one fails the run,
so a rule this script cannot evaluate is never taken as passing.

Run by deploy/check with the deploy venv's Python (it needs samtranslator's YAML loader, which reads the short
forms such as !Ref and !Not). Usage: deploy/test_rules.py [TEMPLATE]
"""

import json
import math
import re
import sys
import traceback
from pathlib import Path

from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "template.yaml")
# The route table the functions dispatch on and the local API Gateway emulates, and what the tests' strict layer
# takes each function's grants to be: both must be the template's.
ROUTES = ROOT / "shared" / "src" / "routes.rs"
GRANTS = ROOT / "tests" / "aws-grants.json"
FUNCTIONS = {"Chunk": "ChunkFunction", "Complete": "CompleteFunction", "Tus": "TusFunction"}
DAY = 86_400
# API Gateway's HTTP API integration limit, which the template's TimeoutInMillis must not pass.
INTEGRATION_LIMIT_MS = 29_000


class Unsupported(Exception):
    """An intrinsic function (or a use of one) this evaluator does not implement."""


class Refused(Exception):
    """A parameter value that CloudFormation refuses before it evaluates any rule."""


def parameter_values(template, overrides):
    """The parameters' values as rules see them: strings, and lists of strings for CommaDelimitedList."""
    declared = template["Parameters"]
    unknown = set(overrides) - set(declared)
    if unknown:
        raise KeyError(f"not parameters of the template: {sorted(unknown)}")
    values = {}
    for name, spec in declared.items():
        raw = overrides.get(name, spec.get("Default"))
        if raw is None:
            raise Refused(f"{name}: no value and no default")
        raw = str(raw)
        kind = spec["Type"]
        if kind == "CommaDelimitedList":
            members = raw.split(",")
            value = members
        elif kind in ("String", "Number"):
            members = [raw]
            value = raw
        else:
            raise Unsupported(f"parameter type {kind} of {name}")
        for member in members:
            if "AllowedValues" in spec and member not in [str(v) for v in spec["AllowedValues"]]:
                raise Refused(f"{name}: {member!r} is not one of {spec['AllowedValues']}")
            # CloudFormation's patterns must match the whole value.
            if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], member):
                raise Refused(f"{name}: {member!r} does not match {spec['AllowedPattern']}")
            if kind == "Number":
                try:
                    number = float(member)
                except ValueError:
                    raise Refused(f"{name}: {member!r} is not a number") from None
                if "MinValue" in spec and number < float(spec["MinValue"]):
                    raise Refused(f"{name}: {member} is below {spec['MinValue']}")
                if "MaxValue" in spec and number > float(spec["MaxValue"]):
                    raise Refused(f"{name}: {member} is above {spec['MaxValue']}")
        values[name] = value
    return values


class Evaluator:
    """Evaluates an expression of one template section, with that section's functions only."""

    RULES = frozenset(["Ref", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Fn::Contains", "Fn::EachMemberEquals"])
    CONDITIONS = frozenset(["Ref", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition", "Fn::Select"])
    VALUES = frozenset(["Ref", "Fn::If", "Fn::Select", "Fn::Split"])

    def __init__(self, template, params, allowed):
        self.template = template
        self.params = params
        self.allowed = allowed

    def condition(self, name):
        return self.boolean(Evaluator(self.template, self.params, self.CONDITIONS).eval(self.template["Conditions"][name]))

    @staticmethod
    def boolean(value):
        if not isinstance(value, bool):
            raise Unsupported(f"expected a boolean, got {value!r}")
        return value

    @staticmethod
    def string(value):
        if not isinstance(value, str):
            raise Unsupported(f"expected a string, got {value!r}")
        return value

    @staticmethod
    def strings(value):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Unsupported(f"expected a list of strings, got {value!r}")
        return value

    def eval(self, expr):
        if isinstance(expr, (str, int, float)) and not isinstance(expr, bool):
            return str(expr)
        if isinstance(expr, list):
            return [self.eval(e) for e in expr]
        if not (isinstance(expr, dict) and len(expr) == 1):
            raise Unsupported(f"not an expression: {expr!r}")
        (fn, args), = expr.items()
        if fn not in self.allowed:
            raise Unsupported(f"{fn} (in {expr!r})")
        if fn == "Ref":
            if args not in self.params:
                raise Unsupported(f"Ref to {args}, which is not a parameter")
            return self.params[args]
        if fn == "Condition":
            return self.condition(args)
        if fn == "Fn::Not":
            (arg,) = args
            return not self.boolean(self.eval(arg))
        if fn in ("Fn::And", "Fn::Or"):
            if not 2 <= len(args) <= 10:
                raise Unsupported(f"{fn} takes 2 to 10 conditions: {expr!r}")
            results = [self.boolean(self.eval(a)) for a in args]
            return all(results) if fn == "Fn::And" else any(results)
        if fn == "Fn::Equals":
            left, right = (self.string(self.eval(a)) for a in args)
            return left == right
        if fn == "Fn::Contains":
            haystack, needle = args
            return self.string(self.eval(needle)) in self.strings(self.eval(haystack))
        if fn == "Fn::EachMemberEquals":
            members, value = args
            value = self.string(self.eval(value))
            return all(m == value for m in self.strings(self.eval(members)))
        if fn == "Fn::Select":
            index, items = args
            return self.strings(self.eval(items))[int(self.string(self.eval(index)))]
        if fn == "Fn::Split":
            separator, source = args
            return self.string(self.eval(source)).split(self.string(self.eval(separator)))
        if fn == "Fn::If":
            name, then, otherwise = args
            return self.eval(then if self.condition(name) else otherwise)
        raise Unsupported(fn)  # allowed in a section but not implemented here


def refusals(template, overrides):
    """Why CloudFormation would refuse these parameter values: a constraint, or the descriptions of failed rules."""
    try:
        params = parameter_values(template, overrides)
    except Refused as e:
        return [f"constraint: {e}"]
    rules = Evaluator(template, params, Evaluator.RULES)
    failed = []
    for name, rule in template["Rules"].items():
        if "RuleCondition" in rule and not rules.boolean(rules.eval(rule["RuleCondition"])):
            continue
        for assertion in rule["Assertions"]:
            if not rules.boolean(rules.eval(assertion["Assert"])):
                failed.append(f"{name}: {' '.join(assertion['AssertDescription'].split())}")
    return failed


def environment(template, overrides):
    """The functions' environment variables that depend only on parameters (Globals), for accepted values."""
    values = Evaluator(template, parameter_values(template, overrides), Evaluator.VALUES)
    env = {}
    for var, expr in template["Globals"]["Function"]["Environment"]["Variables"].items():
        try:
            env[var] = values.eval(expr)
        except Unsupported:
            continue  # a resource's name or ARN (bucket, table): nothing a parameter decides
    return env


def final_prefixes(template, overrides):
    """Every S3 key prefix the policies derive from KeyTemplate (Select 0 of Split on "{"), as evaluated."""
    values = Evaluator(template, parameter_values(template, overrides), Evaluator.VALUES)
    found = []

    def walk(node):
        if isinstance(node, dict):
            if set(node) == {"Fn::Select"} and "KeyTemplate" in repr(node):
                found.append(values.eval(node))
                return
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(template["Resources"])
    return found


# --------------------------------------------------------------------------------------------------- the cases

ISSUER = {"JwtIssuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE", "JwtAudience": "client1"}
ANONYMOUS = {"AllowAnonymous": "true"}


def assert_refused(template, overrides, *words):
    why = refusals(template, overrides)
    assert why, f"accepted, but must be refused: {overrides}"
    text = " | ".join(why)
    for word in words:
        assert word in text, f"{overrides}: refused, but not for {word!r}: {text}"


def assert_accepted(template, overrides):
    why = refusals(template, overrides)
    assert not why, f"refused, but must be accepted: {overrides}: {why}"


def test_plain_deploy_is_refused_without_an_issuer(t):
    assert_refused(t, {}, "JwtIssuer is required", "AllowAnonymous=true")
    assert_refused(t, {"AllowAnonymous": "false"}, "JwtIssuer is required")


def test_issuer_and_audience_deploy_with_auth_required(t):
    assert_accepted(t, ISSUER)
    assert_accepted(t, {**ISSUER, "JwtAudience": "client1,client2"})
    assert environment(t, ISSUER)["CHUNKED_UPLOAD_REQUIRE_AUTH"] == "true"


def test_issuer_needs_an_audience(t):
    assert_refused(t, {"JwtIssuer": ISSUER["JwtIssuer"]}, "JwtAudience")
    assert_refused(t, {**ISSUER, "JwtAudience": "client1,"}, "JwtAudience")
    assert_refused(t, {**ISSUER, "JwtIssuer": "http://issuer.example.com"}, "JwtIssuer")


def test_anonymous_only_when_asked_for_and_without_authorizer(t):
    assert_accepted(t, ANONYMOUS)
    assert environment(t, ANONYMOUS)["CHUNKED_UPLOAD_REQUIRE_AUTH"] == "false"
    assert_refused(t, {**ANONYMOUS, **ISSUER}, "AllowAnonymous=true deploys an API without an authorizer")
    assert_refused(t, {**ANONYMOUS, "JwtAudience": "client1"}, "AllowAnonymous=true")
    assert_refused(t, {"AllowAnonymous": "yes"}, "AllowAnonymous")


def test_buffer_lifecycle_must_outlast_every_expiry(t):
    deltas = t["Parameters"]["ExpirationDelta"]["AllowedValues"]
    assert str(t["Parameters"]["ExpirationDelta"]["Default"]) in deltas
    # Every allowed expiry against every day count up to 40: accepted exactly when the lifecycle fires later.
    for delta in deltas:
        for days in range(1, 41):
            values = {**ISSUER, "ExpirationDelta": delta, "BufferExpirationDays": str(days)}
            if days > math.ceil(int(delta) / DAY):
                assert_accepted(t, values)
                env = environment(t, values)
                assert env["CHUNKED_UPLOAD_BUFFER_EXPIRATION_DAYS"] == str(days)
                assert env["CHUNKED_UPLOAD_EXPIRATION_DELTA"] == delta
            else:
                assert_refused(t, values, "BufferExpirationDays must be above")
    assert_accepted(t, {**ISSUER, "ExpirationDelta": "259200", "BufferExpirationDays": "4"})
    assert_refused(t, {**ISSUER, "ExpirationDelta": "259200", "BufferExpirationDays": "3"}, "above 3")
    # Spellings that a text comparison would miss are refused by the pattern before any rule.
    for spelling in ["1.0", "01", "0", "-1", " 1", ""]:
        assert_refused(t, {**ISSUER, "BufferExpirationDays": spelling}, "BufferExpirationDays")
    # Any number of seconds cannot be compared by a rule: only the listed ones are accepted.
    assert_refused(t, {**ISSUER, "ExpirationDelta": "90000"}, "ExpirationDelta")


def test_key_template_keeps_objects_and_grants_off_the_buffer(t):
    for template in ["uploads/{upload_id}/{filename}", "files/{owner}/{upload_id}", "bufferx/{upload_id}",
                     "a/b/{filename}-{upload_id}", "(x)/{upload_id}"]:
        values = {**ISSUER, "KeyTemplate": template}
        assert_accepted(t, values)
        prefixes = final_prefixes(t, values)
        assert len(prefixes) >= 3, f"the S3 grants of the three functions: {prefixes}"
        for prefix in prefixes:
            # The grant "bucket/<prefix>*" reaches under buffer/ unless its first folder is literal and not buffer.
            folder, slash, _ = prefix.partition("/")
            assert slash and folder and folder != "buffer" and not set(folder) & set("*?$"), (template, prefix)
            assert template.startswith(prefix) and "{" not in prefix
    for template in ["{filename}/{upload_id}", "{owner}/{upload_id}", "buffer/{upload_id}", "buffer/x/{upload_id}",
                     "uploads/{filename}", "/uploads/{upload_id}", "up*/{upload_id}", "up?/{upload_id}",
                     "uploads{upload_id}", "${aws:username}/{upload_id}"]:
        assert_refused(t, {**ISSUER, "KeyTemplate": template}, "KeyTemplate")


def test_cors_is_off_unless_origins_are_named(t):
    values = Evaluator(t, parameter_values(t, ISSUER), Evaluator.VALUES)
    assert not values.condition("CorsEnabled")
    for origins in ["https://app.example.com", "https://a.example.com,http://localhost:3000", "*"]:
        assert_accepted(t, {**ISSUER, "CorsAllowedOrigins": origins})
        assert Evaluator(t, parameter_values(t, {**ISSUER, "CorsAllowedOrigins": origins}), Evaluator.VALUES) \
            .condition("CorsEnabled")
    for origins in ["https://app.example.com/", "app.example.com", "https://a.example.com,", ",https://a.example.com"]:
        assert_refused(t, {**ISSUER, "CorsAllowedOrigins": origins}, "CorsAllowedOrigins")


def test_bucket_cors_follows_the_apis_origins(t):
    cors = t["Resources"]["UploadBucket"]["Properties"]["CorsConfiguration"]
    condition, rules, otherwise = cors["Fn::If"]
    assert condition == "CorsEnabled" and otherwise == {"Ref": "AWS::NoValue"}, cors
    (rule,) = rules["CorsRules"]
    assert rule["AllowedMethods"] == ["PUT"], rule
    assert {"etag", "x-amz-checksum-crc64nvme"} <= {h.lower() for h in rule["ExposedHeaders"]}, rule
    assert "x-amz-checksum-crc64nvme" in rule["AllowedHeaders"], rule
    api_cors = t["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["x-amazon-apigateway-cors"]["Fn::If"]
    assert api_cors[0] == "CorsEnabled" and "x-checksum-crc64nvme" in api_cors[1]["allowHeaders"], api_cors
    for origins in ["https://app.example.com", "https://a.example.com,http://localhost:3000", "*"]:
        values = Evaluator(t, parameter_values(t, {**ISSUER, "CorsAllowedOrigins": origins}), Evaluator.VALUES)
        assert values.eval(rule["AllowedOrigins"]) == origins.split(","), origins
        assert values.eval(api_cors[1]["allowOrigins"]) == origins.split(","), origins


def test_every_route_is_behind_the_authorizer(t):
    api = t["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]
    declared = {(method.upper(), path) for path, methods in api.items() for method in methods}
    routed = set()
    for resource in t["Resources"].values():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "HttpApi":
                routed.add((event["Properties"]["Method"], event["Properties"]["Path"]))
    # A route missing from the body would get no security: SAM adds it without the authorizer.
    assert declared == routed, (sorted(declared ^ routed))
    for (method, path) in {("POST", "/upload/create"), ("POST", "/upload/{upload_id}/parts")}:
        assert (method, path) in routed, (method, path)
    for path, methods in api.items():
        for method, operation in methods.items():
            assert operation["security"] == {"Fn::If": ["AuthEnabled", [{"JwtAuthorizer": []}],
                                                        {"Ref": "AWS::NoValue"}]}, (method, path)


def test_presigned_urls_live_between_a_minute_and_the_shortest_expiry(t):
    assert environment(t, ISSUER)["CHUNKED_UPLOAD_PRESIGN_EXPIRY_SECS"] == "900"
    for secs in ["60", "900", "3600"]:
        assert_accepted(t, {**ISSUER, "PresignExpirySecs": secs})
        assert environment(t, {**ISSUER, "PresignExpirySecs": secs})["CHUNKED_UPLOAD_PRESIGN_EXPIRY_SECS"] == secs
    for secs in ["59", "3601", "0", "-1", "soon"]:
        assert_refused(t, {**ISSUER, "PresignExpirySecs": secs}, "PresignExpirySecs")
    # A URL never outlives its upload: the longest lifetime is not above the shortest expiry.
    shortest = min(int(v) for v in t["Parameters"]["ExpirationDelta"]["AllowedValues"])
    assert int(t["Parameters"]["PresignExpirySecs"]["MaxValue"]) <= shortest


def test_chunk_function_s3_grants_are_what_it_calls(t):
    """The chunk function signs UploadPart URLs with its own role: its grants are what presigned PUTs can do."""
    actions = {}
    for statement in t["Resources"]["ChunkFunction"]["Properties"]["Policies"][0]["Statement"]:
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        actions[statement["Sid"]] = set(listed)
    assert actions["MultipartUploadOfFinalObjects"] == {
        "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}, actions
    s3 = {action for listed in actions.values() for action in listed if action.startswith("s3:")}
    assert s3 == {"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:GetObject",
                  "s3:DeleteObject", "s3:ListBucket", "s3:ListBucketMultipartUploads"}, s3


def test_events_function_publishes_to_its_bus_only(t):
    """The events function's grants are its bus, the stream, the marker items and its failure queue; its stream
    filters pass the changes it publishes."""
    for name in ["default", "uploads", "aws.partner/example.com/123/bus"]:
        assert_accepted(t, {**ISSUER, "EventBusName": name})
    # An ARN would make the grant's ARN wrong: the bus is named, the ARN built.
    for name in ["", "arn:aws:events:us-east-1:123456789012:event-bus/uploads", "a bus"]:
        assert_refused(t, {**ISSUER, "EventBusName": name}, "EventBusName")
    function = t["Resources"]["EventsFunction"]["Properties"]
    assert function["Environment"]["Variables"]["CHUNKED_UPLOAD_EVENT_BUS"] == {"Ref": "EventBusName"}
    role = t["Resources"]["EventsFunctionRole"]["Properties"]
    statements = {s["Sid"]: s for s in role["Policies"][0]["PolicyDocument"]["Statement"]}
    actions = {sid: set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
               for sid, s in statements.items()}
    assert actions == {
        "ReadTableStream": {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                            "dynamodb:ListStreams"},
        "PublishToTheBus": {"events:PutEvents"},
        "EventMarkers": {"dynamodb:GetItem", "dynamodb:PutItem"},
        "ReportFailedBatches": {"sqs:SendMessage"},
    }, actions
    bus = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"
    assert statements["PublishToTheBus"]["Resource"] == {"Fn::Sub": bus}, statements["PublishToTheBus"]
    assert statements["EventMarkers"]["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["event/*"]}}, statements["EventMarkers"]
    assert t["Resources"]["UploadsTable"]["Properties"]["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    stream = function["Events"]["TableStream"]["Properties"]
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"], stream
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["EventsFailureQueue", "Arn"]}
    patterns = [json.loads(f["Pattern"]) for f in stream["FilterCriteria"]["Filters"]]
    modify, remove = patterns
    assert modify["eventName"] == ["MODIFY"] and modify["dynamodb"]["NewImage"]["status"]["S"] == ["complete", "aborted"]
    assert remove["eventName"] == ["REMOVE"] and remove["userIdentity"]["principalId"] == ["dynamodb.amazonaws.com"]
    assert remove["dynamodb"]["OldImage"]["status"]["S"] == ["uploading", "completing"], remove


def test_listing_queries_only_the_owners_index(t):
    """GET /upload queries the by_owner index (shared/src/store/listing.rs), as the emulators make it
    (emulators/create_resources.py); the chunk function may query that index and nothing else."""
    table = t["Resources"]["UploadsTable"]["Properties"]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_owner", index
    assert index["KeySchema"] == [{"AttributeName": "owner", "KeyType": "HASH"},
                                  {"AttributeName": "created_at_ms", "KeyType": "RANGE"}], index
    # Keys only: a chunk's commit changes no key, so it writes nothing to the index.
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}, index
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert types == {"upload_id": "S", "owner": "S", "created_at_ms": "N"}, types
    queries = [(name, statement) for name, resource in t["Resources"].items()
               for policy in resource.get("Properties", {}).get("Policies", []) if isinstance(policy, dict)
               for statement in policy.get("Statement", [])
               if "dynamodb:Query" in (statement["Action"] if isinstance(statement["Action"], list)
                                       else [statement["Action"]])]
    assert [(name, s["Action"], s["Resource"]) for name, s in queries] == [
        ("ChunkFunction", "dynamodb:Query", {"Fn::Sub": "${UploadsTable.Arn}/index/by_owner"})], queries
    api = t["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]
    assert "get" in api["/upload"], api["/upload"]


def test_throttling_and_reserved_concurrency(t):
    assert_accepted(t, {**ISSUER, "ThrottlingRateLimit": "10", "ThrottlingBurstLimit": "20", "ReservedConcurrency": "5"})
    for name, value in [("ThrottlingRateLimit", "0"), ("ThrottlingBurstLimit", "0"), ("ReservedConcurrency", "0"),
                        ("ReservedConcurrency", "many")]:
        assert_refused(t, {**ISSUER, name: value}, name)
    settings = t["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"]
    assert settings == {"ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
                        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"}}, settings
    for values, expected in [({**ISSUER}, None), ({**ISSUER, "ReservedConcurrency": "5"}, "5")]:
        v = Evaluator(t, parameter_values(t, values), Evaluator.VALUES)
        for name in ("ChunkFunction", "CompleteFunction", "TusFunction"):
            expr = t["Resources"][name]["Properties"]["ReservedConcurrentExecutions"]
            _, then, _ = expr["Fn::If"]
            assert (v.eval(then) if v.condition(expr["Fn::If"][0]) else None) == expected, (name, values)


def test_time_limits_nest(t):
    deadline = int(environment(t, ISSUER)["CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS"])
    api_functions = 0
    for name, resource in t["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        events = [e["Properties"] for e in resource["Properties"].get("Events", {}).values() if e["Type"] == "HttpApi"]
        if not events:
            continue
        api_functions += 1
        timeout = int(resource["Properties"]["Timeout"])
        assert deadline < timeout, f"{name}: request deadline {deadline} s is not below its Timeout {timeout} s"
        for event in events:
            integration = int(event["TimeoutInMillis"])
            assert integration <= INTEGRATION_LIMIT_MS, f"{name}: integration timeout {integration} ms"
            assert timeout * 1000 < integration, f"{name}: Timeout {timeout} s is not below {integration} ms"
    assert api_functions == 3, api_functions


def test_the_completion_hook_is_granted_exactly_its_function(t):
    """The functions that complete uploads (complete, and tus's, whose last PATCH completes) get the hook's ARN and
    may invoke that function only, and nothing without a hook."""
    for function in ("CompleteFunction", "TusFunction"):
        completes_with_the_hook(t, t["Resources"][function]["Properties"])


def completes_with_the_hook(t, complete):
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:attach-upload"
    for values, hooked in [(ISSUER, False), ({**ISSUER, "CompletionHookArn": arn}, True),
                           ({**ISSUER, "CompletionHookArn": f"{arn}:live"}, True)]:
        assert_accepted(t, values)
        v = Evaluator(t, parameter_values(t, values), Evaluator.VALUES)
        env = {var: v.eval(expr) for var, expr in complete["Environment"]["Variables"].items()}
        assert env["CHUNKED_UPLOAD_COMPLETION_HOOK"] == values.get("CompletionHookArn", ""), env
        granted = []
        for policy in complete["Policies"]:
            if "Fn::If" in policy:
                name, then, otherwise = policy["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}, policy
                policy = then if v.condition(name) else None
            for statement in (policy or {}).get("Statement", []):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if any(a.startswith("lambda:") for a in actions):
                    granted.append((actions, v.eval(statement["Resource"])))
        assert granted == ([(["lambda:InvokeFunction"], values["CompletionHookArn"])] if hooked else []), granted
    # Never a wildcard, a name without an account, or a local kind (which the functions refuse anyway).
    for bad in ["*", "arn:aws:lambda:eu-west-1:123456789012:function:*", "attach-upload", "cmd:./attach.sh",
                "http://127.0.0.1:9000/hook", f"{arn} "]:
        assert_refused(t, {**ISSUER, "CompletionHookArn": bad}, "CompletionHookArn")
    # The hook's timeout leaves the request's deadline room for the completion and for keeping the answer.
    deadline = int(environment(t, ISSUER)["CHUNKED_UPLOAD_REQUEST_TIMEOUT_SECS"])
    assert int(t["Parameters"]["CompletionHookTimeoutSecs"]["MaxValue"]) + 4 < deadline
    for secs in ["0", "21"]:
        assert_refused(t, {**ISSUER, "CompletionHookTimeoutSecs": secs}, "CompletionHookTimeoutSecs")


def test_tus_routes_and_cors(t):
    """tus's routes go to the tus function; OPTIONS (discovery) needs no token; CORS lets a browser's tus client send
    its methods and headers and read its answers (tusd's lists, pkg/handler/config.go, with Upload-Checksum)."""
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"])
              for e in t["Resources"]["TusFunction"]["Properties"]["Events"].values()}
    assert routes == {("POST", "/files"), ("OPTIONS", "/files"), ("HEAD", "/files/{upload_id}"),
                      ("PATCH", "/files/{upload_id}"), ("DELETE", "/files/{upload_id}"),
                      ("POST", "/files/{upload_id}"), ("OPTIONS", "/files/{upload_id}")}, routes
    paths = t["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]
    for path in ("/files", "/files/{upload_id}"):
        assert paths[path]["options"] == {}, paths[path]
        for method, operation in paths[path].items():
            assert method == "options" or "security" in operation, (path, method)
    cors = t["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["x-amazon-apigateway-cors"]["Fn::If"][1]
    assert {"PATCH", "HEAD", "DELETE", "POST", "OPTIONS"} <= set(cors["allowMethods"]), cors
    assert {"tus-resumable", "upload-length", "upload-offset", "upload-metadata", "upload-defer-length",
            "upload-concat", "upload-checksum", "x-http-method-override", "authorization",
            "x-upload-secret"} <= set(cors["allowHeaders"]), cors
    assert {"location", "upload-offset", "upload-length", "upload-expires", "upload-metadata", "upload-concat",
            "upload-defer-length", "tus-resumable", "tus-version", "tus-extension", "tus-max-size",
            "tus-checksum-algorithm", "x-upload-secret"} <= set(cors["exposeHeaders"]), cors


def test_every_function_keeps_its_logs_for_the_retention(t):
    functions = [n for n, r in t["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]
    groups = {r["Properties"]["LogGroupName"]["Fn::Sub"]: r["Properties"]
              for r in t["Resources"].values()
              if r["Type"] == "AWS::Logs::LogGroup" and "LogGroupName" in r["Properties"]}
    for name in functions:
        group = groups.get(f"/aws/lambda/${{{name}}}")
        assert group, f"{name} has no log group of its own: Lambda would create one that keeps logs forever"
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}, (name, group)
    assert len(groups) == len(functions), sorted(groups)
    assert_accepted(t, {**ISSUER, "LogRetentionDays": "7"})
    assert_refused(t, {**ISSUER, "LogRetentionDays": "8"}, "LogRetentionDays")


def test_routes_are_the_route_tables(t):
    """Each route of shared/src/routes.rs is an HttpApi event of the function the table names, and there are no
    others: the local API Gateway cannot route what the deployment does not, nor the other way round."""
    rows = re.findall(r'Row::new\("([A-Z]+)", "([^"]+)", Route::\w+, Function::(\w+)\)', ROUTES.read_text())
    assert len(rows) >= 7, rows
    table = {(method, path, FUNCTIONS[function]) for method, path, function in rows}
    deployed = set()
    for name, resource in t["Resources"].items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "HttpApi":
                deployed.add((event["Properties"]["Method"], event["Properties"]["Path"], name))
    assert table == deployed, sorted(table ^ deployed)


def test_missing_keys_answer_as_the_grants_say(t):
    """tests/aws-grants.json says which functions may list the bucket unconditionally: S3 answers them a missing key
    with 404, and every other function with 403 (the strict layer answers as this file says)."""
    grants = json.loads(GRANTS.read_text())
    functions = {n for n, r in t["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert set(grants) == functions, sorted(set(grants) ^ functions)
    for name, grant in grants.items():
        statements = [s for p in t["Resources"][name]["Properties"].get("Policies", []) if isinstance(p, dict)
                      for s in p.get("Statement", [])]
        may_list = any("s3:ListBucket" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
                       and "Condition" not in s for s in statements)
        assert may_list == grant["list_bucket"], (name, may_list)


def test_the_api_writes_access_logs_without_credentials(t):
    settings = t["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]
    group = settings["DestinationArn"]["Fn::GetAtt"][0]
    assert t["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    line = json.loads(settings["Format"])
    for field in ("requestId", "routeKey", "status", "latencyMs", "integrationError"):
        assert field in line, field
    # What a line may never hold: a token (authorizer claims, headers), a secret or a presigned URL (the query
    # string, headers, bodies), or anything of the request but its route.
    for value in line.values():
        assert value.startswith("$context.") and "authorizer" not in value and "$request" not in value, value
    assert not {"$context.path", "$context.domainName"} & set(line.values()), line


def test_anonymous_deploys_cap_the_file_size(t):
    assert environment(t, ISSUER)["CHUNKED_UPLOAD_MAX_BYTES"] == ""
    assert environment(t, ANONYMOUS)["CHUNKED_UPLOAD_MAX_BYTES"] == str(1 << 30)
    assert environment(t, {**ANONYMOUS, "MaxBytes": "5000"})["CHUNKED_UPLOAD_MAX_BYTES"] == "5000"


def alarms(t):
    return {n: r["Properties"] for n, r in t["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_failure_queue_is_alarmed(t):
    """A stream batch a function gave up on lands on its OnFailure queue: one message there raises an alarm."""
    queues = []
    for resource in t["Resources"].values():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            destination = event["Properties"].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            if destination:
                queues.append(destination["Fn::GetAtt"][0])
    assert queues, "no failure queue found"
    watched = {a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]: a for a in alarms(t).values()
               if a["Namespace"] == "AWS/SQS"}
    for queue in queues:
        alarm = watched.get(queue)
        assert alarm, f"{queue} has no alarm"
        assert alarm["Dimensions"][0] == {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}
        assert (alarm["MetricName"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
            "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold"), alarm


def test_the_apis_5xx_are_alarmed(t):
    (alarm,) = [a for a in alarms(t).values() if a["Namespace"] == "AWS/ApiGateway"]
    assert alarm["MetricName"] == "5xx" and alarm["Statistic"] == "Sum", alarm
    assert {"Name": "ApiId", "Value": {"Ref": "HttpApi"}} in alarm["Dimensions"], alarm
    assert alarm["Threshold"] == {"Ref": "ApiServerErrorThreshold"}, alarm
    assert_refused(t, {**ISSUER, "ApiServerErrorThreshold": "0"}, "ApiServerErrorThreshold")


def test_alarms_notify_the_topic_only_when_one_is_given(t):
    topic = "arn:aws:sns:eu-west-1:123456789012:uploads-oncall"
    assert_accepted(t, {**ISSUER, "AlarmTopicArn": topic})
    assert_refused(t, {**ISSUER, "AlarmTopicArn": "uploads-oncall"}, "AlarmTopicArn")
    for values, expected in [(ISSUER, False), ({**ISSUER, "AlarmTopicArn": topic}, True)]:
        v = Evaluator(t, parameter_values(t, values), Evaluator.VALUES)
        for name, alarm in alarms(t).items():
            for actions in ("AlarmActions", "OKActions"):
                condition, then, otherwise = alarm[actions]["Fn::If"]
                assert v.condition(condition) == expected, (name, values)
                assert v.eval(then) == [topic] if expected else otherwise == {"Ref": "AWS::NoValue"}, (name, actions)


def test_metrics_namespace(t):
    assert environment(t, ISSUER)["CHUNKED_UPLOAD_METRICS_NAMESPACE"] == "ChunkedUpload"
    assert_accepted(t, {**ISSUER, "MetricsNamespace": "Team/Uploads"})
    for bad in ["AWS/Lambda", "", "semi;colon"]:
        assert_refused(t, {**ISSUER, "MetricsNamespace": bad}, "MetricsNamespace")


def test_unknown_functions_fail_loudly(t):
    rules = Evaluator(t, parameter_values(t, ISSUER), Evaluator.RULES)
    for expr in [{"Fn::Join": ["", ["a"]]}, {"Fn::If": ["AuthEnabled", "a", "b"]}, {"Ref": "AWS::Region"}]:
        try:
            rules.eval(expr)
        except Unsupported:
            continue
        raise AssertionError(f"evaluated {expr}, which the evaluator does not implement for rules")


def main():
    template = yaml_parse(TEMPLATE.read_text())
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_") and callable(fn)]
    failed = 0
    for name, fn in tests:
        try:
            fn(template)
        except Exception:  # an Unsupported or KeyError is a failure as much as an AssertionError
            failed += 1
            print(f"FAIL {name}", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"ok   {name}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
