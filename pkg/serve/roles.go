package serve

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ParseRole returns the role named s ("platform", "finance" or
// "operator"), and false for anything else.
func ParseRole(s string) (Role, bool) {
	switch r := Role(strings.TrimSpace(s)); r {
	case RolePlatform, RoleFinance, RoleOperator:
		return r, true
	}
	return "", false
}

// Allow decides whether a caller holding roles may call method (a full gRPC
// method name, "/furrow.ledger.v1.LedgerService/GetTrialBalance"), by the
// same role table that guards gRPC (methodRoles). Callers that are not
// gRPC clients use it: the HTTP/JSON gateway and the console check a
// signed-in user's roles with it before they forward a call. who names the
// caller in the error. The error is a PermissionDenied status.
func Allow(method, who string, roles []Role) error {
	acc, known := methodRoles[method]
	if !known {
		return status.Errorf(codes.PermissionDenied, "%s is not in Furrow's role table: nobody may call it", method)
	}
	if acc.noCert {
		return nil
	}
	for _, r := range roles {
		if slices.Contains(acc.roles, r) {
			return nil
		}
	}
	have := "no Furrow role"
	if len(roles) > 0 {
		have = fmt.Sprintf("roles %v", roles)
	}
	return status.Errorf(codes.PermissionDenied, "%s needs role %s; %q has %s", method, joinRoles(acc.roles), who, have)
}
