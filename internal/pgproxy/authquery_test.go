package pgproxy

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/penstock-dev/penstock/internal/config"
)

// Roles that exist only on the server, with their password stored as SCRAM
// and as md5: found by auth_query, never listed in postgres.users.
const (
	aqSCRAMUser = "aq_scram"
	aqMD5User   = "aq_md5"
	aqPass      = "aq-secret"
)

func createAuthQueryRoles(t *testing.T, c *pgCluster) {
	t.Helper()
	err := c.exec(ctxT(t), c.primary, testSuperuser, testSuperPass, "postgres", `
		DO $$ BEGIN
			SET LOCAL password_encryption = 'scram-sha-256';
			CREATE ROLE `+aqSCRAMUser+` LOGIN PASSWORD '`+aqPass+`';
		EXCEPTION WHEN duplicate_object THEN NULL; END $$;
		DO $$ BEGIN
			SET LOCAL password_encryption = 'md5';
			CREATE ROLE `+aqMD5User+` LOGIN PASSWORD '`+aqPass+`';
		EXCEPTION WHEN duplicate_object THEN NULL; END $$;`)
	if err != nil {
		t.Fatal(err)
	}
}

// With auth_user, a client user that is not in postgres.users logs in with
// its password as the server stores it (SCRAM verifier or md5 hash, looked
// up with auth_query as the auth user) and reaches the server as the
// database's user; a wrong password, an unknown user and a secret of the
// other kind are refused with 28P01 alike.
func TestAuthQuery(t *testing.T) {
	c := needCluster(t)
	createAuthQueryRoles(t, c)
	tests := []struct {
		authType string
		ok       string   // logs in with aqPass
		refused  []string // refused with aqPass
	}{
		{config.PostgresAuthSCRAM, aqSCRAMUser, []string{aqMD5User, "aq_nobody"}},
		{config.PostgresAuthMD5, aqMD5User, []string{aqSCRAMUser, "aq_nobody"}},
	}
	for _, tc := range tests {
		t.Run(tc.authType, func(t *testing.T) {
			pc := testConfig(c, false)
			pc.AuthType = tc.authType
			pc.Users = append(pc.Users, config.PostgresUser{Name: testSuperuser, Password: testSuperPass})
			pc.AuthUser = testSuperuser
			pc.AuthQuery = config.DefaultPostgresAuthQuery
			pc.Databases[0].User, pc.Databases[0].Password = testUser, testPass
			p, _ := startProxy(t, pc)
			ctx := ctxT(t)
			login := func(user, pass string) (*pgx.Conn, error) {
				return pgx.Connect(ctx, dsn(p, user, pass, testDB))
			}
			for range 2 {
				conn, err := login(tc.ok, aqPass)
				if err != nil {
					t.Fatalf("%s with its server password: %v", tc.ok, err)
				}
				var who string
				if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != testUser {
					t.Fatalf("current_user = %q, %v; want the database's user %q", who, err, testUser)
				}
				conn.Close(context.Background())
			}
			refused := func(user, pass string) {
				t.Helper()
				conn, err := login(user, pass)
				if err == nil {
					conn.Close(context.Background())
					t.Fatalf("%s logged in with password %q", user, pass)
				}
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != codeInvalidPassword {
					t.Fatalf("%s: %v; want SQLSTATE 28P01", user, err)
				}
			}
			refused(tc.ok, "wrong")
			for _, u := range tc.refused {
				refused(u, aqPass)
			}
			// Users of the list still log in as before.
			conn := connect(t, p)
			conn.Close(ctx)
			if got := testutil.ToFloat64(p.metrics.authFailures); got != float64(1+len(tc.refused)) {
				t.Errorf("auth failures = %v, want %d", got, 1+len(tc.refused))
			}
		})
	}
}

// An auth_query that cannot run (here: the auth user's password is wrong
// on the server) is a connection failure (08006) naming the cause, not a
// password error.
func TestAuthQueryFailure(t *testing.T) {
	c := needCluster(t)
	createAuthQueryRoles(t, c)
	pc := testConfig(c, false)
	pc.Users = append(pc.Users, config.PostgresUser{Name: testSuperuser, Password: "not-the-password"})
	pc.AuthUser = testSuperuser
	pc.AuthQuery = config.DefaultPostgresAuthQuery
	pc.Databases[0].User, pc.Databases[0].Password = testUser, testPass
	p, _ := startProxy(t, pc)
	_, err := pgx.Connect(ctxT(t), dsn(p, aqSCRAMUser, aqPass, testDB))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != codeConnectionFailure {
		t.Fatalf("login while auth_query fails: %v; want SQLSTATE 08006", err)
	}
}
