package akserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/agentkey-go/agentkey"
)

// MaxTreeAccounts bounds the accounts that ReadAccountTree and
// ReadAccountForest return, so that one request cannot read a huge tree
// into memory; past it, the answer is marked truncated.
const MaxTreeAccounts = 10_000

// treePage is how many children are read at a time.
const treePage = 1000

// AccountNode is an account, with its budgets in the period in force, and
// the accounts under it.
type AccountNode struct {
	agentkey.Account
	// Children are the accounts directly under this one, in id order.
	Children []AccountNode `json:"children"`
}

// AccountTree is an account's place in the budget tree: the accounts above
// it and the subtree below it.
type AccountTree struct {
	// Path are the accounts above the account, from its root down to its
	// parent; empty for a root.
	Path []agentkey.Account `json:"path"`
	// Account is the account with its subtree.
	Account AccountNode `json:"account"`
	// Truncated is set when the subtree has more than MaxTreeAccounts
	// accounts; those read last are left out.
	Truncated bool `json:"truncated,omitempty"`
}

// ReadAccountTree returns account id's path and subtree. It reads the
// subtree one account at a time, a query per account: meant for the admin
// API and the CLI, not for a hot path. ErrNotFound if the account does not
// exist.
func ReadAccountTree(ctx context.Context, svc *agentkey.Service, id string) (AccountTree, error) {
	root, err := svc.Account(ctx, id)
	if err != nil {
		return AccountTree{}, err
	}
	t := AccountTree{Path: []agentkey.Account{}, Account: AccountNode{Account: root}}

	// MaxDepth bounds the climb; the store keeps the tree free of cycles.
	for parent := root.ParentID; parent != "" && len(t.Path) < agentkey.MaxDepth; {
		a, err := svc.Account(ctx, parent)
		if err != nil {
			return AccountTree{}, fmt.Errorf("account tree %s: %w", id, err)
		}
		t.Path = append([]agentkey.Account{a}, t.Path...)
		parent = a.ParentID
	}

	r := treeReader{svc: svc, now: time.Now().UTC(), read: 1}
	if t.Account.Children, err = r.children(ctx, id); err != nil {
		return AccountTree{}, fmt.Errorf("account tree %s: %w", id, err)
	}
	t.Truncated = r.truncated
	return t, nil
}

// treeReader reads a subtree depth first, counting the accounts it read.
type treeReader struct {
	svc       *agentkey.Service
	now       time.Time
	read      int
	truncated bool
}

// children returns the subtrees under the account id.
func (r *treeReader) children(ctx context.Context, id string) ([]AccountNode, error) {
	nodes := []AccountNode{}
	for after := ""; ; {
		page, err := r.svc.Accounts(ctx, id, after, treePage)
		if err != nil {
			return nil, err
		}
		for _, a := range page {
			if r.read >= MaxTreeAccounts {
				r.truncated = true
				return nodes, nil
			}
			r.read++
			if err := roll(a.Budgets, r.now); err != nil {
				return nil, err
			}
			nodes = append(nodes, AccountNode{Account: a})
		}
		if len(page) < treePage {
			break
		}
		after = page[len(page)-1].ID
	}

	for i := range nodes {
		children, err := r.children(ctx, nodes[i].ID)
		if err != nil {
			return nil, err
		}
		nodes[i].Children = children
	}
	return nodes, nil
}

// ReadAccountForest returns every root account with its subtree, reading
// the accounts a page at a time, and reports whether there were more than
// MaxTreeAccounts, of which those with the highest ids are left out.
func ReadAccountForest(ctx context.Context, svc *agentkey.Service) ([]AccountNode, bool, error) {
	var (
		all       []agentkey.Account
		truncated bool
		now       = time.Now().UTC()
	)
	for after := ""; ; {
		page, err := svc.Accounts(ctx, "", after, treePage)
		if err != nil {
			return nil, false, fmt.Errorf("account forest: %w", err)
		}
		all = append(all, page...)
		if len(all) > MaxTreeAccounts {
			all, truncated = all[:MaxTreeAccounts], true
			break
		}
		if len(page) < treePage {
			break
		}
		after = page[len(page)-1].ID
	}

	// An account whose parent was left out is shown as a root.
	ids := make(map[string]bool, len(all))
	children := map[string][]agentkey.Account{}
	for _, a := range all {
		ids[a.ID] = true
	}
	var roots []agentkey.Account
	for _, a := range all {
		if err := roll(a.Budgets, now); err != nil {
			return nil, false, fmt.Errorf("account forest: %w", err)
		}
		if a.ParentID == "" || !ids[a.ParentID] {
			roots = append(roots, a)
		} else {
			children[a.ParentID] = append(children[a.ParentID], a)
		}
	}
	return grow(roots, children), truncated, nil
}

// grow builds the nodes of accounts from the children of each account id.
func grow(accounts []agentkey.Account, children map[string][]agentkey.Account) []AccountNode {
	nodes := make([]AccountNode, 0, len(accounts))
	for _, a := range accounts {
		nodes = append(nodes, AccountNode{Account: a, Children: grow(children[a.ID], children)})
	}
	return nodes
}

// roll brings budgets to the period in force at now, as the service does
// for one account.
func roll(bs []agentkey.Budget, now time.Time) error {
	now = now.Truncate(time.Microsecond)
	for i := range bs {
		if _, _, err := bs[i].RollForward(now); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) accountTree(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := checkID("account id", id); err != nil {
		return err
	}
	t, err := ReadAccountTree(r.Context(), s.svc, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}
